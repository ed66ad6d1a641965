"""mgtutor.viz.model: the query-point trajectory plot, the sub-point plot and the explorer widget."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from mgtutor.config import ModelConfig  # noqa: E402
from mgtutor.model.detector import Detector  # noqa: E402
from mgtutor.viz.model import plot_query_points, plot_subpoints, query_point_explorer  # noqa: E402


@pytest.fixture(scope="module")
def output():
    torch.manual_seed(0)
    cfg = ModelConfig(
        encoder="features", feature_dim=8, hidden=16, queries=4, points=9, layers=3, heads=2, ffn=32, mix_dim=4,
        num_classes=3, mamba_blocks=0,
    )
    detector = Detector(cfg).eval()
    with torch.no_grad():
        detector.query_points.weight.uniform_(0.3, 0.7)
        for layer in detector.decoder.layers:
            layer.point_head.delta.weight.normal_(0, 0.05)
        return detector(torch.randn(2, 8, 12))


def test_plot_query_points_draws_every_point_of_every_row(output):
    target = {"segments": torch.tensor([[0.1, 0.4]]), "labels": torch.tensor([2])}
    ax = plot_query_points(output, query=2, window=1, layer=1, target=target, class_names=["a", "b", "c"], window_frames=48)
    rows = output.points.shape[0]
    offsets = [c.get_offsets() for c in ax.collections if len(c.get_offsets())]
    assert sum(len(o) for o in offsets) == rows * 9
    drawn = sorted(float(x) for o in offsets for x in o[:, 0])
    expected = sorted((output.points[:, 1, 2] * 48).flatten().tolist())
    assert drawn == pytest.approx(expected)
    assert "layer 1" in ax.get_title()
    plt.close(ax.figure)


def test_plot_subpoints_marker_areas_follow_the_weights():
    positions = torch.tensor([[0.2, 0.3], [0.6, 0.7]])
    weights = torch.tensor([[0.25, 0.75], [0.5, 0.5]])
    ax = plot_subpoints(torch.tensor([0.1, 0.5]), positions, weights, signal=torch.randn(10), boundary_points=1)
    sizes = [c.get_sizes() for c in ax.collections if len(c.get_offsets()) == 2]
    assert [list(s) for s in sizes] == [[50.0, 150.0], [100.0, 100.0]]
    plt.close(ax.figure)


def test_explorer_has_three_sliders_over_all_windows(output):
    box = query_point_explorer([output, output])
    window, query, layer = box.children[0].children
    assert (window.max, query.max, layer.max) == (3, 3, 3)
    with pytest.raises(ValueError, match="targets"):
        query_point_explorer(output, targets=[{}])
    plt.close("all")
