"""The challenge's F1 walk of one sequence, drawn: which prediction each ground-truth gesture was credited with.

:func:`plot_f1_walk` puts the ground-truth gestures on the upper rows (file order, top down) and the
predictions on the rows below (in the order the walk reads them), each a bar over its frames coloured by
class, and joins every credited gesture to its prediction with a line labelled by their overlap
(:func:`mgtutor.eval.miga_f1.miga_overlap`). The credits themselves are an input (the walk of
:mod:`mgtutor.eval.miga_f1`, done by the caller), so the picture shows exactly the walk it is given:

- a gesture credited with nothing (missed) has a dashed outline;
- a prediction credited to no gesture (a false alarm, it only lowers precision) is hatched;
- a prediction credited to several gestures, which the organisers' rule allows, has a thick red outline.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from mgtutor.eval.miga_f1 import OFFICIAL_ALPHA, miga_overlap
from mgtutor.viz.detections import class_colour


def plot_f1_walk(
    predictions: Sequence[Sequence[float]],
    ground_truth: Sequence[Sequence[float]],
    credited: Sequence[int | None],
    alpha: float = OFFICIAL_ALPHA,
    class_names: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Draw one sequence's gestures, predictions and credits.

    Args:
        predictions: ``(label, start_frame, end_frame[, score])`` in the order the walk reads them.
        ground_truth: ``(label, start_frame, end_frame)`` in file order; labels 1-based.
        credited: for each ground-truth gesture, the index in ``predictions`` it was credited with, or None.
        alpha: the overlap threshold used (for the title).
        class_names: names of labels 1..k, written on the ground-truth bars.
        ax: where to draw; a new figure sized to the number of rows when None.

    Returns:
        The axes. A frame ``n`` spans ``[n, n + 1)``, so a gesture ``[s, e]`` is a bar from ``s`` to ``e + 1``;
        ground-truth row ``i`` is at ``y = -i``, prediction row ``j`` at ``y = -(g + j)``.
    """
    gt = [tuple(float(v) for v in g[:3]) for g in ground_truth]
    pred = [tuple(float(v) for v in p[:3]) for p in predictions]
    if len(credited) != len(gt):
        raise ValueError(f"got {len(credited)} credits for {len(gt)} ground-truth gestures (one entry each, None when missed)")
    for i, j in enumerate(credited):
        if j is not None and not 0 <= j < len(pred):
            raise ValueError(f"ground-truth gesture {i} is credited with prediction {j}, but there are {len(pred)} predictions")
    rows = len(gt) + len(pred)
    if rows == 0:
        raise ValueError("nothing to draw: no ground truth and no predictions")
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 1.0 + 0.32 * rows), layout="constrained")
    times_credited = Counter(j for j in credited if j is not None)
    height = 0.6

    for i, ((label, start, end), j) in enumerate(zip(gt, credited)):
        ax.barh(-i, end + 1 - start, left=start, height=height, color=class_colour(int(label)), edgecolor="black",
                linewidth=1.0, linestyle="-" if j is not None else "--")  # fmt: skip
        name = class_names[int(label) - 1] if class_names and int(label) <= len(class_names) else f"class {int(label)}"
        ax.text(end + 2, -i, name if j is not None else f"{name} (missed)", va="center", fontsize=8)
    for j, (label, start, end) in enumerate(pred):
        count = times_credited.get(j, 0)
        ax.barh(-(len(gt) + j), end + 1 - start, left=start, height=height, color=class_colour(int(label)),
                edgecolor="tab:red" if count > 1 else "black", linewidth=2.5 if count > 1 else 0.6,
                hatch=None if count else "///")  # fmt: skip
        if count != 1:
            ax.text(end + 2, -(len(gt) + j), f"credited {count}x" if count else "false alarm", va="center", fontsize=8,
                    color="tab:red" if count > 1 else "0.3")  # fmt: skip
    for i, j in enumerate(credited):
        if j is None:
            continue
        (_, gs, ge), (_, ps, pe) = gt[i], pred[j]
        x0, x1 = (gs + ge + 1) / 2, (ps + pe + 1) / 2
        y0, y1 = -i - height / 2, -(len(gt) + j) + height / 2
        ax.plot([x0, x1], [y0, y1], color="0.25", linewidth=0.9)
        ax.text((x0 + x1) / 2, (y0 + y1) / 2, f"{miga_overlap(pred[j], gt[i]):.2f}", fontsize=7, ha="center",
                va="center", bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none"})  # fmt: skip

    ticks = [-i for i in range(rows)]
    ax.set_yticks(ticks, [f"truth {i}" for i in range(len(gt))] + [f"prediction {j}" for j in range(len(pred))], fontsize=8)
    ax.set_ylim(-rows + 0.4, 0.6)
    ax.set_xlabel("frame")
    ax.grid(axis="x", alpha=0.3)
    correct = sum(j is not None for j in credited)
    ax.set_title(f"{correct} of {len(gt)} gestures credited (same class, overlap > {alpha:g}); {len(pred)} predictions")
    return ax
