"""The detections-vs-ground-truth timeline: one bar per gesture, where and in the colour it should be."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
from matplotlib.patches import Rectangle

from mgtutor.eval.postprocess import Detection
from mgtutor.viz.detections import class_colour, plot_detections, save_detections_plot

TRUTH = {36: [(3, 30, 59), (5, 100, 129)], 37: [(1, 0, 9)]}
PREDICTED = {36: [Detection(3, 33, 60, 0.9), Detection(7, 200, 230, 0.2)], 37: []}


def bars(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def test_bars_span_the_frames_in_the_class_colour():
    figure = plot_detections(PREDICTED, TRUTH, fps=30.0, class_names=[f"name{i}" for i in range(1, 18)])
    ax = figure.axes[0]
    found = bars(ax)
    assert len(found) == 5
    spans = sorted((round(b.get_x() * 30), round((b.get_x() + b.get_width()) * 30), round(b.get_y() + b.get_height() / 2)) for b in found)
    # frames [s, e] -> [s, e + 1) seconds * 30; rows: Sample0036 truth 0, predicted -1, Sample0037 truth -2
    assert spans == [(0, 10, -2), (30, 60, 0), (33, 61, -1), (100, 130, 0), (200, 231, -1)]
    by_span = {(round(b.get_x() * 30), round(b.get_y() + b.get_height() / 2)): b for b in found}
    assert by_span[(30, 0)].get_facecolor()[:3] == pytest.approx(class_colour(3)[:3])
    assert by_span[(33, -1)].get_facecolor()[:3] == pytest.approx(class_colour(3)[:3])
    assert by_span[(200, -1)].get_alpha() < by_span[(33, -1)].get_alpha()  # shaded by score
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Sample0036 truth", "predicted", "Sample0037 truth", "predicted"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["1 name1", "3 name3", "5 name5", "7 name7"]
    assert ax.get_xlabel() == "time (s)"
    plt.close(figure)


def test_saved_and_frame_axis(tmp_path):
    path = save_detections_plot(tmp_path / "plots" / "timeline.png", PREDICTED, TRUTH, sequences=[37])
    assert path.stat().st_size > 5_000
    figure = plot_detections({"a": [(2, 5, 9)]}, {"a": []})
    assert figure.axes[0].get_xlabel() == "frame" and len(bars(figure.axes[0])) == 1
    plt.close(figure)
    with pytest.raises(ValueError, match="no sequence"):
        plot_detections({}, {})


def test_overlapping_items_share_their_row_in_lanes():
    figure = plot_detections({"a": [(1, 0, 10), (2, 5, 15), (3, 11, 20)]}, {"a": [(4, 0, 30)]})
    centres = {round(b.get_x()): (b.get_y() + b.get_height() / 2, b.get_height()) for b in bars(figure.axes[0]) if b.get_y() < -0.5}
    assert centres == {0: pytest.approx((-0.8, 0.4)), 5: pytest.approx((-1.2, 0.4)), 11: pytest.approx((-0.8, 0.4))}
    plt.close(figure)
