"""Hungarian matching: the cost terms by hand, and optimality against brute force over all assignments."""

from __future__ import annotations

import itertools

import pytest
import torch

from mgtutor.train.matching import hungarian_match, match_batch, matching_cost


def test_cost_terms_by_hand():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=torch.float64))
    segments = torch.tensor([[0.2, 0.6], [-0.2, 0.2]], dtype=torch.float64)
    labels = torch.tensor([0])
    target = torch.tensor([[0.1, 0.3]], dtype=torch.float64)
    # unequal weights, so a cost that swapped the L1 and tIoU terms would not pass
    cost = matching_cost(logits, segments, labels, target, cost_class=10, cost_l1=5, cost_iou=2)
    # query 0: prob 0.7; (centre, length) (0.4, 0.4) vs (0.2, 0.2): L1 0.4; tIoU 0.1 / 0.5
    # query 1: prob 0.1; (0.0, 0.4) vs (0.2, 0.2): L1 0.4 on the raw segment; its tIoU on the segment
    # clamped to the window, (0, 0.2): 0.1 / 0.3 (unclamped it would be 0.1 / 0.5)
    expected = torch.tensor([[-7.0 + 5 * 0.4 - 2 * 0.2], [-1.0 + 5 * 0.4 - 2 / 3]], dtype=torch.float64)
    torch.testing.assert_close(cost, expected)


def brute_force_cost(cost):
    q, g = len(cost), len(cost[0]) if cost else 0
    if g == 0:
        return 0.0
    return min(sum(cost[p][t] for t, p in enumerate(perm)) for perm in itertools.permutations(range(q), g))


@pytest.mark.parametrize("seed", range(40))
def test_optimal_against_brute_force(seed):
    generator = torch.Generator().manual_seed(seed)
    q = int(torch.randint(1, 7, (1,), generator=generator))
    g = int(torch.randint(0, min(q, 4) + 1, (1,), generator=generator))
    k = 3
    logits = torch.randn(q, k + 1, generator=generator, dtype=torch.float64)
    segments = torch.rand(q, 2, generator=generator, dtype=torch.float64).sort(-1).values
    if seed % 4 == 0:  # ties: duplicated queries
        logits[q // 2 :] = logits[0]
        segments[q // 2 :] = segments[0]
    labels = torch.randint(0, k, (g,), generator=generator)
    target = torch.rand(g, 2, generator=generator, dtype=torch.float64).sort(-1).values
    pred_idx, tgt_idx = hungarian_match(logits, segments, labels, target)
    cost = matching_cost(logits, segments, labels, target)
    assert len(pred_idx) == len(tgt_idx) == g
    assert len(set(pred_idx.tolist())) == g and sorted(tgt_idx.tolist()) == list(range(g))
    assert pred_idx.tolist() == sorted(pred_idx.tolist())
    assert float(cost[pred_idx, tgt_idx].sum()) == pytest.approx(brute_force_cost(cost.tolist()), abs=1e-9)


def test_no_ground_truth_gives_empty_match():
    no_labels, no_segments = torch.zeros(0, dtype=torch.long), torch.zeros(0, 2)
    pred_idx, tgt_idx = hungarian_match(torch.randn(5, 4), torch.rand(5, 2), no_labels, no_segments)
    assert pred_idx.shape == tgt_idx.shape == (0,)
    assert pred_idx.dtype == torch.int64


def test_obvious_assignment():
    # query 2 predicts target 0 exactly, query 0 predicts target 1 exactly
    logits = torch.full((3, 3), -5.0)
    logits[2, 1] = logits[0, 0] = 5.0
    segments = torch.tensor([[0.6, 0.9], [0.0, 1.0], [0.1, 0.3]])
    labels = torch.tensor([1, 0])
    target = torch.tensor([[0.1, 0.3], [0.6, 0.9]])
    pred_idx, tgt_idx = hungarian_match(logits, segments, labels, target)
    assert dict(zip(pred_idx.tolist(), tgt_idx.tolist())) == {0: 1, 2: 0}


def test_non_finite_outputs_still_match():
    logits = torch.randn(4, 3)
    logits[1] = float("nan")
    segments, target = torch.rand(4, 2).sort(-1).values, torch.rand(2, 2).sort(-1).values
    pred_idx, _ = hungarian_match(logits, segments, torch.tensor([0, 1]), target)
    assert len(pred_idx) == 2


def test_batch_with_varying_g():
    logits = torch.randn(3, 5, 4)
    segments = torch.rand(3, 5, 2).sort(-1).values
    targets = [
        {"labels": torch.tensor([0, 2]), "segments": torch.tensor([[0.1, 0.2], [0.5, 0.9]])},
        {"labels": torch.zeros(0, dtype=torch.long), "segments": torch.zeros(0, 2)},
        {"labels": torch.tensor([1]), "segments": torch.tensor([[0.3, 0.4]])},
    ]
    matches = match_batch(logits, segments, targets)
    assert [len(p) for p, _ in matches] == [2, 0, 1]
    for (pred_idx, tgt_idx), window_logits, window_segments, target in zip(matches, logits, segments, targets):
        expected = hungarian_match(window_logits, window_segments, target["labels"], target["segments"])
        assert pred_idx.tolist() == expected[0].tolist() and tgt_idx.tolist() == expected[1].tolist()
    with pytest.raises(ValueError, match="2 targets for a batch of 3"):
        match_batch(logits, segments, targets[:2])


def test_bad_labels_are_refused():
    with pytest.raises(ValueError, match="not below num_classes = 3"):
        matching_cost(torch.randn(2, 4), torch.rand(2, 2), torch.tensor([3]), torch.rand(1, 2))


def test_tied_segments_leave_the_class_cost_alone_to_decide():
    # the middle start: every query's segment is (0.5, 0.5), so the L1 and tIoU costs are equal along each
    # ground truth's column and the assignment is the class cost's
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 6, generator=generator)
    segments = torch.full((8, 2), 0.5)
    labels = torch.tensor([0, 3, 4])
    truth = torch.tensor([[0.1, 0.2], [0.4, 0.9], [0.6, 0.7]])
    cost = matching_cost(logits, segments, labels, truth)
    position = cost - 10 * -logits.softmax(-1)[:, labels]  # the L1 and tIoU terms
    torch.testing.assert_close(position, position[:1].expand_as(position))  # the same for every query
    class_only = hungarian_match(logits, segments, labels, truth, cost_l1=0.0, cost_iou=0.0)
    full = hungarian_match(logits, segments, labels, truth)
    assert [t.tolist() for t in full] == [t.tolist() for t in class_only]
    # distinct segments: position counts, and the assignment changes
    spread = torch.stack((torch.arange(8) / 8, (torch.arange(8) + 1) / 8), dim=-1)
    assert [t.tolist() for t in hungarian_match(logits, spread, labels, truth)] != [t.tolist() for t in class_only]
