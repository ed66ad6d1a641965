"""The matching picture: one panel per cost term and their sum, the assignment outlined in each."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.patches import Rectangle

from mgtutor.train.matching import hungarian_match, matching_cost
from mgtutor.viz.matching import plot_cost_matrix


def outlined(ax):
    """(query, target) of each outlined cell."""
    return sorted((round(p.get_y() + 0.5), round(p.get_x() + 0.5)) for p in ax.patches if isinstance(p, Rectangle) and not p.get_fill())


def test_panels_sum_to_the_library_cost_and_outline_the_assignment():
    torch.manual_seed(0)
    logits, segments = torch.randn(5, 4), torch.rand(5, 2).sort(-1).values
    labels, targets = torch.tensor([0, 2]), torch.tensor([[0.1, 0.3], [0.5, 0.9]])
    terms = {
        "class": matching_cost(logits, segments, labels, targets, 10, 0, 0),
        "L1": matching_cost(logits, segments, labels, targets, 0, 5, 0),
        "tIoU": matching_cost(logits, segments, labels, targets, 0, 0, 5),
    }
    assignment = hungarian_match(logits, segments, labels, targets)
    figure = plot_cost_matrix(terms, assignment, target_names=["a", "b"])
    axes = figure.axes[:4]  # then the colour bars
    assert [ax.get_title() for ax in axes] == ["class", "L1", "tIoU", "total"]
    total = axes[3].get_images()[0].get_array()
    np.testing.assert_allclose(total, matching_cost(logits, segments, labels, targets).double().numpy(), rtol=1e-6)
    expected = sorted(zip(assignment[0].tolist(), assignment[1].tolist()))
    assert all(outlined(ax) == expected for ax in axes)
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["a", "b"]
    cells = [t.get_text() for t in axes[3].texts]  # every cell annotated, row by row
    assert cells == [f"{v:.2f}".replace("-0.00", "0.00") for v in total.ravel()]
    plt.close(figure)


def test_without_assignment_nothing_is_outlined_and_large_matrices_are_not_annotated():
    figure = plot_cost_matrix({"cost": np.arange(48 * 5, dtype=float).reshape(48, 5)})
    assert all(outlined(ax) == [] for ax in figure.axes[:2])
    assert len(figure.axes[0].texts) == 0
    plt.close(figure)


@pytest.mark.parametrize(
    "terms, kwargs, message",
    [
        ({}, {}, "no cost term"),
        ({"a": np.zeros((3, 2)), "b": np.zeros((3, 1))}, {}, "same (q, g) matrix"),
        ({"a": np.zeros(3)}, {}, "same (q, g) matrix"),
        ({"a": np.zeros((3, 2))}, {"assignment": ([0, 1], [0])}, "2 queries but 1 targets"),
        ({"a": np.zeros((3, 2))}, {"assignment": ([3], [0])}, "must lie in the (3, 2) matrix"),
        ({"a": np.zeros((3, 2))}, {"target_names": ["x"]}, "1 target names for 2"),
    ],
)
def test_bad_input_is_refused(terms, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        plot_cost_matrix(terms, **kwargs)
