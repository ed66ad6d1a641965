"""Detections against ground truth on a timeline: one pair of rows per sequence, a bar per gesture.

For each sequence the upper row holds the labelled gestures, the lower row the detections, each bar
spanning its frames and coloured by class (the same colour for the same class in both rows), detections
shaded by score. Missed gestures show as a bar with nothing under it, false alarms as a bar with
nothing over it, a wrong class as a change of colour.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from mgtutor.data.smg import sample_name


def class_colour(label: int):
    """The colour of 1-based ``label`` (tab20; 17 classes fit without repeats)."""
    return plt.get_cmap("tab20")((label - 1) % 20)


def _row_name(sequence: Hashable) -> str:
    return sample_name(sequence) if isinstance(sequence, int) else str(sequence)


def _lanes(items: Sequence[Sequence[float]]) -> list[int]:
    """A lane per item so that overlapping items (co-occurring gestures, overlapping detections) sit
    side by side within their row: each takes the first lane whose last item ended before it starts."""
    lanes, ends = [0] * len(items), []
    for i in sorted(range(len(items)), key=lambda i: (items[i][1], items[i][2])):
        start, end = items[i][1], items[i][2]
        lane = next((j for j, last in enumerate(ends) if last < start), len(ends))
        if lane == len(ends):
            ends.append(end)
        ends[lane] = end
        lanes[i] = lane
    return lanes


def plot_detections(
    predictions: Mapping[Hashable, Sequence[Sequence[float]]],
    ground_truth: Mapping[Hashable, Sequence[Sequence[float]]],
    fps: float | None = None,
    class_names: Sequence[str] | None = None,
    sequences: Sequence[Hashable] | None = None,
    ax: Axes | None = None,
) -> Figure:
    """Draw each sequence's ground truth over its detections.

    Args:
        predictions: sequence id -> detections ``(label, start_frame, end_frame[, score])``, e.g.
            :class:`~mgtutor.eval.postprocess.Detection`; without a score a bar is fully opaque.
        ground_truth: sequence id -> gestures ``(label, start_frame, end_frame)``, labels 1-based.
        fps: the videos' frame rate, to draw seconds; None draws frame numbers.
        class_names: names of labels 1..k, for the legend.
        sequences: which sequences, top to bottom (default: the ground truth's, sorted).
        ax: where to draw (default: a new figure sized to the number of sequences).

    Returns:
        The figure. A frame ``n`` spans ``[n, n + 1)``, so a gesture ``[s, e]`` is a bar from ``s`` to ``e + 1``.
    """
    sequences = sorted(ground_truth) if sequences is None else list(sequences)
    if not sequences:
        raise ValueError("no sequence to draw")
    if ax is None:
        _, ax = plt.subplots(figsize=(11, 0.9 + 0.75 * len(sequences)), layout="constrained")
    scale = 1.0 / fps if fps else 1.0
    labels_seen: set[int] = set()
    ticks, tick_labels = [], []
    for index, sequence in enumerate(sequences):
        truth_row, predicted_row = -2.0 * index, -2.0 * index - 1
        rows = ((truth_row, ground_truth.get(sequence, ()), "truth"), (predicted_row, predictions.get(sequence, ()), "predicted"))
        for y, items, name in rows:
            lanes = _lanes(items)
            height = 0.8 / (max(lanes, default=0) + 1)
            for item, lane in zip(items, lanes):
                label, start, end = int(item[0]), float(item[1]), float(item[2])
                score = float(item[3]) if len(item) > 3 else 1.0
                ax.barh(y + 0.4 - (lane + 0.5) * height, (end + 1 - start) * scale, left=start * scale, height=height,
                        color=class_colour(label), alpha=0.3 + 0.7 * min(max(score, 0.0), 1.0), edgecolor="black", linewidth=0.4)  # fmt: skip
                labels_seen.add(label)
            ticks.append(y)
            tick_labels.append(f"{_row_name(sequence)} {name}" if name == "truth" else name)
        if index:
            ax.axhline(truth_row + 0.5, color="grey", linewidth=0.6)
    ax.set_yticks(ticks, tick_labels)
    ax.set_ylim(-2 * len(sequences) + 0.4, 0.6)
    ax.set_xlim(left=0)
    ax.set_xlabel("time (s)" if fps else "frame")
    ax.grid(axis="x", alpha=0.3)
    handles = [
        Patch(color=class_colour(label), label=f"{label} {class_names[label - 1]}" if class_names and label <= len(class_names) else str(label))
        for label in sorted(labels_seen)
    ]
    if handles:
        ax.legend(handles=handles, title="class", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small")
    ax.set_title("ground truth (upper row) and detections (lower row, shaded by score)")
    return ax.figure


def save_detections_plot(path: str | Path, *args, **kwargs) -> Path:
    """:func:`plot_detections` written to ``path`` (PNG at 120 dpi); returns the path."""
    figure = plot_detections(*args, **kwargs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
