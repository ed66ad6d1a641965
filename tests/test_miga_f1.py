"""The challenge's F1: one hand-worked case per rule, and agreement with a plain restatement of the kit's loop."""

from __future__ import annotations

import random

import pytest

from mgtutor.eval.miga_f1 import correct_detections, credited_predictions, miga_f1, miga_f1_over_thresholds, miga_overlap


def kit_loop(predictions, ground_truth, alpha, consume):
    """The organisers' walk written out plainly: per gesture, first same-label prediction with overlap > alpha."""
    correct = num_pred = num_gt = 0
    for sequence in set(ground_truth) | set(predictions):
        preds = list(predictions.get(sequence, []))
        gts = ground_truth.get(sequence, [])
        num_pred += len(preds)
        num_gt += len(gts)
        for g_label, gs, ge in gts:
            for i, (p_label, ps, pe) in enumerate(preds):
                if p_label == g_label and (min(pe, ge) - max(ps, gs)) / (max(pe, ge) - min(ps, gs)) > alpha:
                    correct += 1
                    if consume:
                        del preds[i]
                    break
    p = correct / num_pred
    r = correct / num_gt
    return correct, num_pred, num_gt, 2 * p * r / (p + r + 1e-7)


def test_overlap_formula_by_hand():
    assert miga_overlap((1, 0, 4), (1, 0, 10)) == pytest.approx(0.4)
    assert miga_overlap((1, 5, 15), (1, 0, 10)) == pytest.approx(5 / 15)  # equals tIoU when overlapping
    assert miga_overlap((1, 20, 30), (1, 0, 10)) == pytest.approx(-10 / 30)  # negative when disjoint
    assert miga_overlap((1, 7, 7), (1, 7, 7)) == 0.0  # zero-length span


def test_strictly_greater_than_alpha():
    gt = {"S1": [(3, 0, 10)]}
    exactly = miga_f1({"S1": [(3, 0, 3)]}, gt)  # overlap 3 / 10 == 0.3: not counted
    assert exactly.correct == 0 and exactly.f1 == 0.0
    above = miga_f1({"S1": [(3, 0, 4)]}, gt)  # 0.4
    assert above.correct == 1
    assert above.precision == 1.0 and above.recall == 1.0
    assert above.f1 == pytest.approx(2 / (2 + 1e-7))


def test_label_mismatch_never_counts():
    result = miga_f1({"S1": [(2, 0, 10)]}, {"S1": [(3, 0, 10)]})
    assert result.correct == 0 and result.num_predictions == 1 and result.num_ground_truth == 1


def test_unconsumed_prediction_is_credited_twice():
    gt = {"S1": [(1, 0, 10), (1, 2, 12)]}
    pred = {"S1": [(1, 1, 11)]}  # overlap 9 / 11 with both gestures
    official = miga_f1(pred, gt)
    assert official.correct == 2
    assert official.precision == 2.0  # the quirk: more correct detections than predictions
    assert official.recall == 1.0
    assert official.f1 == pytest.approx(2 * 2.0 * 1.0 / (3.0 + 1e-7))
    strict = miga_f1(pred, gt, one_to_one=True)
    assert strict.correct == 1
    assert (strict.precision, strict.recall) == (1.0, 0.5)


def test_one_to_one_is_greedy_in_order():
    # Both gestures accept the first prediction; only the second gesture accepts the second one.
    gt = {"S1": [(1, 0, 10), (1, 0, 30)]}
    pred = {"S1": [(1, 0, 20), (1, 0, 5)]}  # overlaps: (0.5, 0.5) with gesture 1, (20/30, 5/30) with gesture 2
    assert miga_f1(pred, gt, one_to_one=True).correct == 1  # gesture 1 takes prediction 1, gesture 2 finds none
    assert miga_f1(pred, gt).correct == 2
    swapped = {"S1": [(1, 0, 5), (1, 0, 20)]}
    assert miga_f1(swapped, gt, one_to_one=True).correct == 2  # gesture 1 now takes the short prediction
    assert miga_f1(swapped, gt).correct == 2  # the official count ignores order


def test_micro_aggregation_not_macro():
    gt = {"A": [(1, 0, 10)], "B": [(2, 0, 10), (2, 20, 30), (2, 40, 50)]}
    pred = {"A": [(1, 0, 10)], "B": [(5, 0, 10)]}
    result = miga_f1(pred, gt)
    # micro: 1 correct of 2 predictions and 4 gestures; the per-sequence F1s (1 and 0) would average to 0.5
    assert (result.correct, result.num_predictions, result.num_ground_truth) == (1, 2, 4)
    assert result.precision == 0.5 and result.recall == 0.25
    assert result.f1 == pytest.approx(2 * 0.5 * 0.25 / (0.75 + 1e-7))
    assert result.f1 == pytest.approx(1 / 3, abs=1e-6)
    assert result.per_sequence["A"].correct == 1 and result.per_sequence["B"].num_ground_truth == 3


def test_empty_prediction_list_and_missing_sequence():
    gt = {"A": [(1, 0, 10)], "B": [(2, 0, 10)]}
    with_empty = miga_f1({"A": [(1, 0, 10)], "B": []}, gt)
    missing = miga_f1({"A": [(1, 0, 10)]}, gt)
    assert with_empty == missing
    assert (missing.correct, missing.num_predictions, missing.num_ground_truth) == (1, 1, 2)
    assert missing.per_sequence["B"].num_predictions == 0
    nothing = miga_f1({}, gt)  # the kit would divide by zero here
    assert (nothing.precision, nothing.recall, nothing.f1) == (0.0, 0.0, 0.0)
    assert miga_f1({"A": []}, {"A": []}).f1 == 0.0


def test_predictions_for_unknown_sequences_count_as_predictions():
    gt = {"A": [(1, 0, 10)]}
    result = miga_f1({"A": [(1, 0, 10)], "Z": [(1, 0, 10), (2, 5, 9)]}, gt)
    assert (result.correct, result.num_predictions, result.num_ground_truth) == (1, 3, 1)
    assert result.per_sequence["Z"].num_ground_truth == 0


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="start frame 9 is after end frame 3"):
        miga_f1({"A": [(1, 9, 3)]}, {"A": [(1, 0, 10)]})
    with pytest.raises(ValueError, match=r"must be \(label, start_frame, end_frame\) tuples"):
        miga_f1({"A": [(1, 9)]}, {"A": [(1, 0, 10)]})
    with pytest.raises(ValueError, match="spelled the same way"):
        miga_f1({36: [(1, 0, 10)]}, {"Sample0036": [(1, 0, 10)]})


def test_alpha_is_a_parameter():
    pred, gt = [(1, 0, 4)], [(1, 0, 10)]
    assert correct_detections(pred, gt, alpha=0.3) == 1
    assert correct_detections(pred, gt, alpha=0.4) == 0


@pytest.mark.parametrize("one_to_one", [False, True])
def test_agrees_with_the_kit_loop_on_random_cases(one_to_one):
    rng = random.Random(0)
    for _ in range(200):
        ground_truth, predictions = {}, {}
        for sequence in range(rng.randint(1, 3)):
            ground_truth[sequence] = []
            for _ in range(rng.randint(1, 6)):
                s = rng.randint(0, 80)
                ground_truth[sequence].append((rng.randint(1, 3), s, s + rng.randint(1, 20)))
            predictions[sequence] = []
            for _ in range(rng.randint(1, 8)):
                s = rng.randint(0, 80)
                predictions[sequence].append((rng.randint(1, 3), s, s + rng.randint(1, 20)))
        result = miga_f1(predictions, ground_truth, one_to_one=one_to_one)
        correct, num_pred, num_gt, f1 = kit_loop(predictions, ground_truth, 0.3, consume=one_to_one)
        assert (result.correct, result.num_predictions, result.num_ground_truth) == (correct, num_pred, num_gt)
        assert result.f1 == pytest.approx(f1, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("one_to_one", [False, True])
def test_over_thresholds_equals_thresholding_first(one_to_one):
    rng = random.Random(1)
    thresholds = (0.0, 0.25, 0.5, 0.75, 1.1)
    for _ in range(50):
        ground_truth = {s: [] for s in range(3)}
        predictions = {s: [] for s in range(2)}  # sequence 2 has no predictions
        for sequence in ground_truth:
            for _ in range(rng.randint(0, 5)):
                s = rng.randint(0, 60)
                ground_truth[sequence].append((rng.randint(1, 2), s, s + rng.randint(1, 20)))
        for sequence in predictions:
            for _ in range(rng.randint(0, 8)):
                s = rng.randint(0, 60)
                predictions[sequence].append((rng.randint(1, 2), s, s + rng.randint(1, 20), rng.random()))
        results = miga_f1_over_thresholds(predictions, ground_truth, thresholds, one_to_one=one_to_one)
        for threshold, result in zip(thresholds, results):
            kept = {s: [p[:3] for p in preds if p[3] >= threshold] for s, preds in predictions.items()}
            assert result == miga_f1(kept, ground_truth, one_to_one=one_to_one)


def plain_walk(predictions, ground_truth, alpha, consume):
    """Per gesture, the index of the first same-label prediction with overlap > alpha (not yet consumed), or None."""
    used, credited = set(), []
    for g in ground_truth:
        hit = next((i for i, p in enumerate(predictions) if i not in used and p[0] == g[0] and miga_overlap(p, g) > alpha), None)
        credited.append(hit)
        if consume and hit is not None:
            used.add(hit)
    return credited


def test_the_walk_names_the_prediction_each_gesture_is_credited_with():
    gt = [(3, 10, 40), (3, 30, 60), (5, 100, 130), (7, 200, 240)]
    pred = [(3, 12, 50), (5, 105, 125), (7, 200, 212), (9, 300, 320)]
    assert credited_predictions(pred, gt) == [0, 0, 1, None]  # 0 credited twice; (7, 200, 212) overlaps exactly 0.3
    assert credited_predictions(pred, gt, one_to_one=True) == [0, None, 1, None]
    assert credited_predictions([], gt) == [None] * 4 and credited_predictions(pred, []) == []


@pytest.mark.parametrize("one_to_one", [False, True])
def test_the_walk_agrees_with_the_plain_loop_and_the_count(one_to_one):
    rng = random.Random(1)
    for _ in range(200):
        gt = [(rng.randint(1, 3), s, s + rng.randint(1, 20)) for s in (rng.randint(0, 80) for _ in range(rng.randint(0, 6)))]
        pred = [(rng.randint(1, 3), s, s + rng.randint(1, 20)) for s in (rng.randint(0, 80) for _ in range(rng.randint(0, 8)))]
        walked = credited_predictions(pred, gt, one_to_one=one_to_one)
        assert walked == plain_walk(pred, gt, 0.3, consume=one_to_one)
        assert sum(j is not None for j in walked) == correct_detections(pred, gt, one_to_one=one_to_one)
