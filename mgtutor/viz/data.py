"""Pictures of the data: frames with their skeleton, label timelines, class and duration histograms, and
how sliding windows cut a sequence (notebook 05)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from mgtutor.data.smg import JOINT_INDEX, JOINT_PARENTS, NUM_LABELS, SequenceInfo
from mgtutor.data.windows import Window, sampled_position


def class_palette() -> list[tuple[float, float, float]]:
    """One colour per label 1..17 (index label - 1)."""
    return sns.color_palette("tab20", NUM_LABELS)


def draw_skeleton(ax: Axes, joints: np.ndarray, color: str = "yellow", size: float = 8.0) -> None:
    """Draw the 25 joints ``(25, 2)`` (pixel u, v) and the Kinect bones over an image on ``ax``."""
    joints = np.asarray(joints)
    for child, parent in JOINT_PARENTS.items():
        (u0, v0), (u1, v1) = joints[JOINT_INDEX[parent]], joints[JOINT_INDEX[child]]
        ax.plot([u0, u1], [v0, v1], color=color, linewidth=1.0)
    ax.scatter(joints[:, 0], joints[:, 1], s=size, color=color, edgecolors="black", linewidths=0.3, zorder=3)


def frame_grid(
    frames: Sequence[np.ndarray],
    joints: Sequence[np.ndarray] | None = None,
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Frames ``(H, W, 3)`` in a grid, each with its skeleton ``(25, 2)`` drawn over it when given."""
    nrows = -(-len(frames) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=figsize or (2.2 * ncols, 2.4 * nrows), layout="constrained", squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= len(frames):
            continue
        ax.imshow(frames[i])
        if joints is not None:
            draw_skeleton(ax, joints[i])
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    return fig


def label_timeline(
    sequences: Sequence[SequenceInfo], class_names: Sequence[str] | None = None, ax: Axes | None = None
) -> Figure:
    """One row per sequence, a bar per gesture coloured by class, time in seconds. Co-occurring gestures
    are drawn half height, side by side."""
    if ax is None:
        _, ax = plt.subplots(figsize=(12, 0.45 * len(sequences) + 1.5), layout="constrained")
    palette = class_palette()
    for row, seq in enumerate(sequences):
        lanes: list[int] = []  # end frame of the last gesture in each lane
        placed = []
        for g in sorted(seq.gestures, key=lambda g: g.start):
            lane = next((i for i, end in enumerate(lanes) if end < g.start), len(lanes))
            if lane == len(lanes):
                lanes.append(g.end)
            else:
                lanes[lane] = g.end
            placed.append((g, lane))
        height = 0.8 / max(1, len(lanes))
        for g, lane in placed:
            y = row - 0.4 + lane * height
            ax.broken_barh([(g.start / seq.fps, g.num_frames / seq.fps)], (y, height), color=palette[g.label - 1])
    ax.set_yticks(range(len(sequences)), [s.name for s in sequences])
    ax.invert_yaxis()
    ax.set_xlabel("time (s)")
    used = sorted({g.label for s in sequences for g in s.gestures})
    names = class_names or [str(label) for label in range(1, NUM_LABELS + 1)]
    handles = [plt.Rectangle((0, 0), 1, 1, color=palette[label - 1]) for label in used]
    ax.legend(handles, [f"{label} {names[label - 1]}" for label in used], fontsize=8, ncols=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax.figure


def class_and_duration_histograms(
    sequences: Sequence[SequenceInfo], class_names: Sequence[str] | None = None, figsize: tuple[float, float] = (12, 3.8)
) -> Figure:
    """Left: gestures per class. Right: gesture durations in frames (at each video's own fps), with
    the mean marked."""
    gestures = [g for s in sequences for g in s.gestures]
    fig, (left, right) = plt.subplots(1, 2, figsize=figsize, layout="constrained", width_ratios=(1.4, 1))
    counts = np.bincount([g.label for g in gestures], minlength=NUM_LABELS + 1)[1:]
    names = class_names or [str(label) for label in range(1, NUM_LABELS + 1)]
    sns.barplot(x=list(range(1, NUM_LABELS + 1)), y=counts, hue=list(range(1, NUM_LABELS + 1)), palette=class_palette(), legend=False, ax=left)
    left.set_xticks(range(NUM_LABELS), [f"{i + 1} {n}" for i, n in enumerate(names)], rotation=70, ha="right", fontsize=8)
    left.set_ylabel("gestures")
    lengths = np.array([g.num_frames for g in gestures])
    sns.histplot(lengths, bins=30, ax=right, color="tab:blue")
    right.axvline(lengths.mean(), color="black", linestyle="--", label=f"mean {lengths.mean():.1f} frames")
    right.set_xlabel("gesture duration (frames)")
    right.legend()
    return fig


def window_plot(seq: SequenceInfo, windows: Sequence[Window], fps: float, ax: Axes | None = None, max_windows: int | None = None) -> Figure:
    """How windows cut one sequence, in sampled frames at ``fps``.

    Top row: the sequence's gestures. Below, one row per window (a grey span); each gesture the window
    keeps (fully inside) is drawn in its class colour, the ones it cuts are drawn hollow.
    """
    windows = [w for w in windows if w.sequence == seq.sample][:max_windows]
    if ax is None:
        _, ax = plt.subplots(figsize=(12, 0.3 * len(windows) + 1.6), layout="constrained")
    palette = class_palette()
    spans = [(sampled_position(g.start, seq.fps, fps), sampled_position(g.end + 1, seq.fps, fps)) for g in seq.gestures]
    for (x0, x1), g in zip(spans, seq.gestures):
        ax.broken_barh([(x0, x1 - x0)], (-0.4, 0.8), color=palette[g.label - 1])
    for row, w in enumerate(windows, start=1):
        ax.broken_barh([(w.start, w.size)], (row - 0.45, 0.9), color="0.9", edgecolor="0.5")
        for i, (x0, x1) in enumerate(spans):
            if x1 <= w.start or x0 >= w.start + w.size:
                continue
            kept = i in w.gestures
            style: dict[str, Any] = {"color": palette[seq.gestures[i].label - 1]} if kept else {"facecolor": "none", "edgecolor": palette[seq.gestures[i].label - 1], "linestyle": ":"}
            ax.broken_barh([(x0, x1 - x0)], (row - 0.3, 0.6), **style)
    ax.set_yticks(range(len(windows) + 1), ["gestures"] + [f"window @{w.start}" for w in windows], fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel(f"sampled frame at {fps:g} fps")
    ax.set_title(f"{seq.name}: filled = kept (fully inside), dotted = cut by the window's edge", fontsize=9)
    return ax.figure
