"""The data pictures draw what they claim: one bar per gesture, one row per window, the skeleton's bones."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest

from mgtutor.data.smg import JOINT_PARENTS, Gesture, SequenceInfo
from mgtutor.data.windows import make_windows
from mgtutor.viz.data import class_and_duration_histograms, draw_skeleton, frame_grid, label_timeline, window_plot


@pytest.fixture
def sequences(tmp_path):
    a = SequenceInfo(1, tmp_path, 900, 30.0, 4000, (Gesture(3, 10, 60), Gesture(2, 40, 80), Gesture(17, 850, 899)))
    b = SequenceInfo(2, tmp_path, 600, 30.0, 4000, (Gesture(1, 0, 15),))
    return [a, b]


def test_label_timeline_draws_one_bar_per_gesture_and_overlaps_in_lanes(sequences):
    fig = label_timeline(sequences)
    ax = fig.axes[0]
    bars = ax.collections
    assert len(bars) == 4
    heights = sorted({round(b.get_paths()[0].get_extents().height, 3) for b in bars})
    assert heights == [0.4, 0.8]  # the overlapping pair of Sample0001 at half height
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Sample0001", "Sample0002"]
    plt.close(fig)


def test_histograms_count_every_gesture(sequences):
    fig = class_and_duration_histograms(sequences)
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert sum(heights) == 4 and heights[0] == 1 and heights[16] == 1
    plt.close(fig)


def test_window_plot_has_a_row_per_window(sequences):
    windows = make_windows(sequences, 128, 128, 10.0)
    fig = window_plot(sequences[0], windows, 10.0)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["gestures", "window @0", "window @128", "window @172"]
    plt.close(fig)


def test_frame_grid_and_skeleton():
    joints = np.random.default_rng(0).uniform(0, 32, (25, 2))
    fig = frame_grid([np.zeros((32, 32, 3), np.uint8)] * 3, [joints] * 3, ["a", "b", "c"], ncols=2)
    assert len(fig.axes) == 4 and fig.axes[0].get_title() == "a"
    assert len(fig.axes[0].lines) == len(JOINT_PARENTS)
    _, ax = plt.subplots()
    draw_skeleton(ax, joints)
    assert len(ax.lines) == 24
    plt.close("all")
