"""Segment geometry: tIoU by hand, zero-length safety, gradients, and the centre/length round trip."""

from __future__ import annotations

import pytest
import torch

from mgtutor.model.segments import from_centre_length, pairwise_iou, segment_iou, to_centre_length


def test_segment_iou_hand_values():
    a = torch.tensor([[0.0, 10.0], [0.0, 10.0], [0.0, 4.0], [2.0, 6.0], [0.0, 1.0]])
    b = torch.tensor([[0.0, 10.0], [5.0, 15.0], [6.0, 9.0], [3.0, 5.0], [1.0, 2.0]])
    # identical; half overlap 5 / 15; disjoint; nested 2 / 4; touching at one point
    expected = torch.tensor([1.0, 5.0 / 15.0, 0.0, 0.5, 0.0])
    torch.testing.assert_close(segment_iou(a, b), expected)
    torch.testing.assert_close(segment_iou(b, a), expected)


def test_segment_iou_broadcasts():
    a = torch.tensor([0.0, 4.0])
    b = torch.tensor([[[0.0, 2.0], [1.0, 5.0]]])  # (1, 2, 2)
    out = segment_iou(a, b)
    assert out.shape == (1, 2)
    torch.testing.assert_close(out, torch.tensor([[0.5, 3.0 / 5.0]]))


def test_zero_length_segments_are_finite_with_finite_gradients():
    a = torch.tensor([[0.3, 0.3], [0.3, 0.3], [0.2, 0.2]], requires_grad=True)
    b = torch.tensor([[0.3, 0.3], [0.1, 0.5], [0.4, 0.4]], requires_grad=True)
    iou = segment_iou(a, b)
    torch.testing.assert_close(iou, torch.zeros(3))
    iou.sum().backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


def test_segment_iou_gradcheck():
    a = torch.tensor([[0.1, 0.6], [0.2, 0.5], [0.0, 0.3]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([[0.3, 0.9], [0.25, 0.45], [0.4, 0.7]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(segment_iou, (a, b))


def test_pairwise_iou_matches_a_loop():
    a = torch.rand(5, 2).sort(dim=-1).values
    b = torch.rand(3, 2).sort(dim=-1).values
    out = pairwise_iou(a, b)
    assert out.shape == (5, 3)
    for i in range(5):
        for j in range(3):
            s = max(a[i, 0], b[j, 0])
            e = min(a[i, 1], b[j, 1])
            inter = max(float(e - s), 0.0)
            union = float(a[i, 1] - a[i, 0] + b[j, 1] - b[j, 0]) - inter
            assert out[i, j].item() == pytest.approx(inter / union, abs=1e-6)


def test_pairwise_iou_empty_and_bad_shapes():
    assert pairwise_iou(torch.zeros(0, 2), torch.rand(4, 2)).shape == (0, 4)
    with pytest.raises(ValueError, match="last axis of size 2"):
        segment_iou(torch.zeros(3, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        pairwise_iou(torch.zeros(2, 2, 2), torch.zeros(2, 2))


def test_centre_length_round_trip():
    se = torch.tensor([[0.2, 0.6], [-0.1, 0.3], [0.5, 0.5]])
    cl = to_centre_length(se)
    torch.testing.assert_close(cl, torch.tensor([[0.4, 0.4], [0.1, 0.4], [0.5, 0.0]]))
    torch.testing.assert_close(from_centre_length(cl), se)
