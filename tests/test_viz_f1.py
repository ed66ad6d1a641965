"""The F1-walk picture: bars where the gestures are, a line per credit, the rule's marks."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
from matplotlib.patches import Rectangle

from mgtutor.viz.detections import class_colour
from mgtutor.viz.f1 import plot_f1_walk

TRUTH = [(3, 10, 29), (3, 20, 39), (5, 100, 119)]
PREDICTED = [(3, 12, 35, 0.9), (7, 200, 220, 0.4)]
CREDITED = [0, 0, None]  # both class-3 gestures credited with prediction 0, the class-5 one missed


def bars(ax):
    return {round(p.get_y() + p.get_height() / 2): p for p in ax.patches if isinstance(p, Rectangle)}


def test_bars_lines_and_marks_follow_the_walk():
    ax = plot_f1_walk(PREDICTED, TRUTH, CREDITED, class_names=[f"name{i}" for i in range(1, 18)])
    found = bars(ax)
    assert sorted(found) == [-4, -3, -2, -1, 0]  # truth rows 0..-2, prediction rows -3, -4
    assert (found[0].get_x(), found[0].get_width()) == (10, 20)  # frames [10, 29] -> [10, 30)
    assert found[-3].get_facecolor()[:3] == pytest.approx(class_colour(3)[:3])
    assert found[-2].get_linestyle() == "--"  # the missed gesture
    assert found[-3].get_edgecolor()[:3] == pytest.approx(matplotlib.colors.to_rgb("tab:red"))  # credited twice
    assert found[-4].get_hatch() == "///"  # the false alarm
    lines = [line for line in ax.lines if len(line.get_xdata()) == 2]
    assert len(lines) == 2
    texts = [t.get_text() for t in ax.texts]
    assert "credited 2x" in texts and "false alarm" in texts and "name5 (missed)" in texts
    # overlaps of the credits: [12, 35] with [10, 29] -> 17 / 25, with [20, 39] -> 15 / 27
    assert f"{17 / 25:.2f}" in texts and f"{15 / 27:.2f}" in texts
    assert ax.get_title().startswith("2 of 3 gestures credited")
    plt.close(ax.figure)


@pytest.mark.parametrize(
    "predicted, truth, credited, message",
    [
        (PREDICTED, TRUTH, [0, None], "2 credits for 3"),
        (PREDICTED, TRUTH, [0, 2, None], "credited with prediction 2, but there are 2"),
        ([], [], [], "nothing to draw"),
    ],
)
def test_bad_input_is_refused(predicted, truth, credited, message):
    with pytest.raises(ValueError, match=message):
        plot_f1_walk(predicted, truth, credited)
