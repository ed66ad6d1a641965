"""Query points: initial table, points -> segment rule, the scaled update (eq. 1), the offset head."""

import pytest
import torch

from mgtutor.model.query_points import (
    PointOffsetHead,
    QueryPoints,
    initial_points,
    localisation_points,
    points_to_segments,
    refine_points,
)


@pytest.mark.parametrize("num_points", [3, 4, 5, 15, 21, 25, 27, 30, 31, 32, 35])
def test_localisation_points_is_pointtads_python_slice(num_points):
    # PointTAD slices points[..., :-P//3]; Python itself is the reference
    assert localisation_points(num_points) == len(list(range(num_points))[: -num_points // 3])


def test_localisation_points_refuses_too_few():
    with pytest.raises(ValueError, match="at least 3"):
        localisation_points(2)


def test_points_to_segments_uses_min_and_max_of_the_first_two_thirds():
    points = torch.rand(2, 5, 31, dtype=torch.float64)
    segments = points_to_segments(points)
    assert segments.shape == (2, 5, 2)
    for b in range(2):
        for q in range(5):
            located = points[b, q, :20].tolist()  # floor(2 * 31 / 3) = 20
            assert segments[b, q, 0].item() == min(located)
            assert segments[b, q, 1].item() == max(located)
    # the semantic third does not move the segment
    moved = points.clone()
    moved[..., 20:] = 5.0
    torch.testing.assert_close(points_to_segments(moved), segments)


def test_segment_gradient_picks_one_point_when_points_tie():
    # all points equal (the all-middle start): the gradient must reach a single point, else equal points
    # would stay equal forever
    points = torch.full((1, 1, 30), 0.5, requires_grad=True)
    points_to_segments(points)[..., 1].sum().backward()
    assert torch.count_nonzero(points.grad) == 1


def test_refine_points_by_hand():
    points = torch.tensor([[[0.2, 0.6, 0.9]]])  # localisation points 0.2, 0.6 -> length 0.4
    deltas = torch.tensor([[[1.0, -1.0, 0.5]]])
    expected = torch.tensor([[[0.2 + 0.2, 0.6 - 0.2, 0.9 + 0.1]]])
    torch.testing.assert_close(refine_points(points, deltas), expected)


def test_refine_points_cannot_move_points_of_a_zero_length_segment():
    points = torch.full((2, 3, 30), 0.5)
    torch.testing.assert_close(refine_points(points, torch.randn(2, 3, 30)), points)


def test_refine_points_refuses_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        refine_points(torch.rand(1, 2, 30), torch.rand(1, 2, 29))


def test_refine_points_gradient_through_the_length_is_zero_with_a_zero_head():
    # distinct points (length > 0): with zero deltas the Jacobian d refined / d points is the identity
    points = torch.rand(1, 1, 6, dtype=torch.float64, requires_grad=True)
    deltas = torch.zeros(1, 1, 6, dtype=torch.float64, requires_grad=True)
    jacobian = torch.autograd.functional.jacobian(lambda x: refine_points(x, deltas), points)
    torch.testing.assert_close(jacobian.reshape(6, 6), torch.eye(6, dtype=torch.float64))
    # with non-zero deltas the length adds a term: the identity no longer
    moved = torch.autograd.functional.jacobian(lambda x: refine_points(x, torch.ones_like(x)), points)
    assert not torch.allclose(moved.reshape(6, 6), torch.eye(6, dtype=torch.float64))


def test_refine_points_coinciding_points_get_no_gradient_through_the_length_and_the_head_none():
    points = torch.full((1, 1, 30), 0.5, requires_grad=True)
    deltas = torch.randn(1, 1, 30, requires_grad=True)  # any head, PointTAD's random one included
    weights = torch.randn(1, 1, 30)
    (refine_points(points, deltas) * weights).sum().backward()
    torch.testing.assert_close(points.grad, weights)  # the identity alone
    assert torch.all(deltas.grad == 0)


def test_initial_points_middle_is_pointtads_constant():
    torch.testing.assert_close(initial_points(7, 30, "middle"), torch.full((7, 30), 0.5), rtol=0, atol=0)
    torch.testing.assert_close(QueryPoints(7, 30).weight.detach(), torch.full((7, 30), 0.5), rtol=0, atol=0)


@pytest.mark.parametrize(("queries", "points"), [(1, 3), (4, 9), (16, 30), (48, 30), (5, 31)])
def test_initial_points_spread_tile_the_window_with_distinct_segments(queries, points):
    table = initial_points(queries, points, "spread")
    assert table.shape == (queries, points) and table.dtype == torch.float32
    assert table.min() >= 0 and table.max() <= 1
    segments = points_to_segments(table)
    expected = torch.stack((torch.arange(queries) / queries, (torch.arange(queries) + 1) / queries), dim=-1)
    torch.testing.assert_close(segments, expected.float())  # query i covers [i/q, (i+1)/q]
    assert len({tuple(s) for s in segments.tolist()}) == queries
    # the semantic points lie strictly inside their query's segment
    semantic = table[:, localisation_points(points) :]
    assert torch.all(semantic > segments[:, :1]) and torch.all(semantic < segments[:, 1:])


def test_initial_points_draw_no_random_numbers_and_refuse_unknown_starts():
    state = torch.get_rng_state()
    initial_points(5, 9, "spread")
    QueryPoints(5, 9, "spread")
    assert torch.equal(state, torch.get_rng_state())
    with pytest.raises(ValueError, match="middle"):
        initial_points(5, 9, "random")


def test_spread_points_move_from_the_first_layer():
    points = QueryPoints(4, 9, "spread")(2)
    refined = refine_points(points, torch.ones_like(points))
    torch.testing.assert_close(refined - points, torch.full_like(points, 0.5 / 4))  # deltas * 0.5 * (1/q)


def test_query_points_start_in_the_middle_and_share_one_table():
    table = QueryPoints(queries=7, points=30)
    points = table(batch=3)
    assert points.shape == (3, 7, 30)
    assert torch.all(points == 0.5)
    points.sum().backward()
    torch.testing.assert_close(table.weight.grad, torch.full((7, 30), 3.0))


def test_point_offset_head_structure_and_zero_start():
    head = PointOffsetHead(hidden=16, points=30)
    linears = [m for m in head.hidden if isinstance(m, torch.nn.Linear)]
    norms = [m for m in head.hidden if isinstance(m, torch.nn.LayerNorm)]
    assert len(linears) == 3 and len(norms) == 3
    assert all(linear.bias is None for linear in linears)
    deltas = head(torch.randn(2, 5, 16))
    assert deltas.shape == (2, 5, 30)
    assert torch.all(deltas == 0)
    # Xavier-uniform hidden layers: values beyond PyTorch's default bound 1/sqrt(fan_in), within Xavier's
    weight = linears[0].weight
    assert weight.abs().max() <= (6 / 32) ** 0.5
    assert weight.abs().max() > 1 / 16**0.5
