"""Pictures of the decoder at work: query points through the layers, deformable sub-points, a widget.

- :func:`plot_query_points`: one query's points on the window's timeline (x = time, y = decoder layer,
  0 = the initial points), each point's trajectory, each layer's pseudo-segment, the ground truth behind.
- :func:`plot_subpoints`: one query's points and their deformable sub-points (marker area = weight).
- :func:`query_point_explorer`: ipywidgets sliders (window, query, layer) over :func:`plot_query_points`.

Shapes: L decoder layers, b windows, q queries, p points, s sub-points, k classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes

from mgtutor.model.detector import DetectorOutput
from mgtutor.model.query_points import localisation_points


def _windows(outputs: DetectorOutput | Sequence[DetectorOutput]) -> list[tuple[DetectorOutput, int]]:
    """Every window of one output or a list of outputs, as (output, index in its batch)."""
    outputs = [outputs] if isinstance(outputs, DetectorOutput) else list(outputs)
    return [(out, b) for out in outputs for b in range(out.points.shape[1])]


def plot_query_points(
    output: DetectorOutput,
    query: int,
    window: int = 0,
    layer: int | None = None,
    target: dict[str, torch.Tensor] | None = None,
    class_names: Sequence[str] | None = None,
    window_frames: int | None = None,
    ax: Axes | None = None,
) -> Axes:
    """One query's points through the decoder, on the window's timeline.

    Args:
        output: the detector's output for a batch of windows.
        query: which query (0..q-1).
        window: which window of the batch.
        layer: a decoder row to highlight (0 = initial points, l = after layer l); the title then names
            that layer's predicted class. None highlights nothing and names the final prediction.
        target: the window's ground truth ``{"segments": (g, 2), "labels": (g,)}``, drawn as shaded spans.
        class_names: names of the k classes for the title and the ground-truth labels.
        window_frames: draw time in frames of the window (0..W) instead of [0, 1].
        ax: where to draw; a new (8, 3.6) figure when None.

    Circles are the localisation points (the first two-thirds: their min and max are the segment, the
    bar on each row), crosses the semantic points; grey lines follow each point from layer to layer.
    Nothing keeps points inside the window; the part of the axis outside it is shaded.
    """
    points = output.points[:, window, query].detach().float().cpu().numpy()  # (L + 1, p)
    rows, num_points = points.shape
    scale = window_frames or 1.0
    located = localisation_points(num_points)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3.6), layout="constrained")
    if target is not None:
        for (start, end), label in zip(target["segments"].tolist(), target["labels"].tolist()):
            ax.axvspan(start * scale, end * scale, color="tab:green", alpha=0.15)
            name = class_names[label] if class_names else str(label)
            middle = (start + end) / 2 * scale
            ax.text(middle, rows - 0.45, name, ha="center", va="bottom", fontsize=8, color="tab:green")
    x = points * scale
    y = np.arange(rows)
    for j in range(num_points):
        ax.plot(x[:, j], y, color="0.6", linewidth=0.7, zorder=1)
    for row in range(rows):
        emphasis = layer is None or row == layer
        colour = "tab:blue" if emphasis else "0.55"
        ax.scatter(x[row, :located], np.full(located, row), s=22, color=colour, zorder=3)
        ax.scatter(x[row, located:], np.full(num_points - located, row), s=22, marker="x", color=colour, zorder=3)
        ax.plot([x[row, :located].min(), x[row, :located].max()], [row - 0.18, row - 0.18], color=colour,
                linewidth=3 if emphasis else 1.5, solid_capstyle="butt", zorder=2)
    ax.set_yticks(y, ["initial"] + [f"layer {l}" for l in range(1, rows)])
    ax.set_ylim(-0.6, rows - 0.1)
    # points may leave the window (nothing clamps them); show where, outside the shaded window
    low, high = min(0.0, float(points.min())), max(1.0, float(points.max()))
    if low < 0:
        ax.axvspan((low - 0.02) * scale, 0, color="0.92", zorder=0)
    if high > 1:
        ax.axvspan(1 * scale, (high + 0.02) * scale, color="0.92", zorder=0)
    ax.set_xlim((low - 0.02) * scale, (high + 0.02) * scale)
    ax.set_xlabel("time in the window" + (" (frames)" if window_frames else " (normalised)"))
    shown = rows - 1 if layer in (None, 0) else layer
    probs = output.logits[shown - 1, window, query].detach().float().softmax(-1)
    k = probs.shape[0] - 1
    label = int(probs.argmax())
    name = "no object" if label == k else (class_names[label] if class_names else f"class {label}")
    ax.set_title(f"window {window}, query {query}: layer {shown} predicts {name} ({float(probs[label]):.2f})")
    return ax


def plot_subpoints(
    points: torch.Tensor,
    positions: torch.Tensor,
    weights: torch.Tensor,
    signal: torch.Tensor | None = None,
    boundary_points: int = 4,
    ax: Axes | None = None,
) -> Axes:
    """One query's points and the sub-points deformable sampling reads (eqs. 9-11).

    Args:
        points: (p,) the query's points in [0, 1].
        positions: (p, s) its sub-points (``DeformableSampling.subpoint_positions`` for one query).
        weights: (p, s) their softmax weights; a marker's area is proportional to its weight.
        signal: optional (t,) values per feature step (e.g. a feature channel) drawn underneath.
        boundary_points: the first points, drawn in another colour (they have their own head).
        ax: where to draw; a new (8, 3) figure when None.

    Each point sits on its own row (y = point index); thin lines join a point to its sub-points.
    """
    points = points.detach().float().cpu().numpy()
    positions = positions.detach().float().cpu().numpy()
    weights = weights.detach().float().cpu().numpy()
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 3), layout="constrained")
    rows = np.arange(len(points))
    if signal is not None:
        values = signal.detach().float().cpu().numpy()
        steps = np.linspace(0, 1, len(values))
        span = values.max() - values.min() or 1.0
        ax.fill_between(steps, -1, -1 + (values - values.min()) / span * (len(points) + 1), color="0.9", zorder=0)
    for j, point in enumerate(points):
        colour = "tab:red" if j < boundary_points else "tab:blue"
        for position in positions[j]:
            ax.plot([point, position], [j, j], color=colour, linewidth=0.6, alpha=0.6, zorder=1)
        ax.scatter(positions[j], np.full(positions.shape[1], j), s=200 * weights[j], color=colour, alpha=0.6, zorder=2)
        ax.scatter([point], [j], marker="|", s=120, color="black", zorder=3)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-1, len(points))
    ax.set_yticks(rows[:: max(1, len(rows) // 10)])
    ax.set_xlabel("time in the window (normalised)")
    ax.set_ylabel("point")
    ax.set_title("deformable sub-points (area = weight); red: boundary points, blue: the rest")
    return ax


def query_point_explorer(
    outputs: DetectorOutput | Sequence[DetectorOutput],
    targets: Sequence[dict[str, torch.Tensor]] | None = None,
    class_names: Sequence[str] | None = None,
    window_frames: int | None = None,
):
    """Sliders to pick a window, a query and a decoder layer, redrawing :func:`plot_query_points`.

    Args:
        outputs: one :class:`DetectorOutput` (its batch axis gives the windows) or a list of them.
        targets: the ground truth of each window, in the same order, or None.
        class_names, window_frames: as :func:`plot_query_points`.

    Returns:
        an ``ipywidgets`` box to display in a notebook.
    """
    import ipywidgets as widgets

    windows = _windows(outputs)
    if targets is not None and len(targets) != len(windows):
        raise ValueError(f"got {len(targets)} targets for {len(windows)} windows")
    first = windows[0][0]
    window = widgets.IntSlider(value=0, min=0, max=len(windows) - 1, description="window")
    query = widgets.IntSlider(value=0, min=0, max=first.points.shape[2] - 1, description="query")
    last = first.points.shape[0] - 1
    layer = widgets.IntSlider(value=last, min=0, max=last, description="layer")

    def draw(window: int, query: int, layer: int) -> None:
        output, index = windows[window]
        _, ax = plt.subplots(figsize=(8, 3.6), layout="constrained")
        plot_query_points(
            output,
            query,
            window=index,
            layer=layer,
            target=None if targets is None else targets[window],
            class_names=class_names,
            window_frames=window_frames,
            ax=ax,
        )
        plt.show()

    shown = widgets.interactive_output(draw, {"window": window, "query": query, "layer": layer})
    return widgets.VBox([widgets.HBox([window, query, layer]), shown])
