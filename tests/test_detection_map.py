"""Detection-mAP: perfect predictions, hand-worked rankings, thresholds, and the interpolated AP."""

from __future__ import annotations

import numpy as np
import pytest

from mgtutor.eval.detection_map import DEFAULT_THRESHOLDS, average_precision, detection_map


def test_default_thresholds_are_decimal():
    assert DEFAULT_THRESHOLDS == (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def test_perfect_predictions_score_one():
    gt = {"A": [(1, 0, 10), (2, 5, 30)], "B": [(1, 100, 140), (17, 3, 4)]}
    pred = {s: [(*g, 0.5 + 0.1 * i) for i, g in enumerate(gestures)] for s, gestures in gt.items()}
    result = detection_map(pred, gt)
    assert result.mean_ap == pytest.approx((1.0,) * 9)
    assert result.average == pytest.approx(1.0)
    assert sorted(result.per_class) == [1, 2, 17]


def test_two_classes_by_hand():
    gt = {"A": [(1, 0, 10), (1, 20, 30), (2, 0, 10)]}
    pred = {
        "A": [
            (1, 0, 10, 0.9),  # tIoU 1 with the first gesture of class 1
            (1, 21, 29, 0.8),  # tIoU 0.8 with the second
            (1, 50, 60, 0.7),  # matches nothing
            (2, 0, 5, 0.6),  # tIoU exactly 0.5 with the gesture of class 2
        ]
    }
    result = detection_map(pred, gt, thresholds=(0.5, 0.6, 0.9))
    # 0.5: class 1 ranks TP, TP, FP -> AP 1; class 2 TP (>= is inclusive) -> 1
    # 0.6: class 1 -> 1; class 2 FP -> 0
    # 0.9: class 1 ranks TP, FP, FP: precision (1, 1/2, 1/3), recall (1/2, 1/2, 1/2) -> AP 1/2; class 2 -> 0
    assert result.per_class[1] == pytest.approx((1.0, 1.0, 0.5))
    assert result.per_class[2] == pytest.approx((1.0, 0.0, 0.0))
    assert result.mean_ap == pytest.approx((1.0, 0.5, 0.25))
    assert result.average == pytest.approx(1.75 / 3)
    assert result.thresholds == (0.5, 0.6, 0.9)


def test_false_positive_ranked_first_halves_ap():
    gt = {"A": [(3, 0, 10)]}
    first = detection_map({"A": [(3, 0, 10, 0.8), (3, 40, 50, 0.9)]}, gt, thresholds=(0.5,))
    assert first.average == pytest.approx(0.5)  # precision (0, 1/2), recall (0, 1)
    last = detection_map({"A": [(3, 0, 10, 0.9), (3, 40, 50, 0.8)]}, gt, thresholds=(0.5,))
    assert last.average == pytest.approx(1.0)  # ranked last, the same false positive costs nothing


def test_duplicates_are_false_positives():
    gt = {"A": [(1, 0, 10), (1, 20, 30)]}
    pred = {"A": [(1, 0, 10, 0.9), (1, 1, 10, 0.8), (1, 20, 30, 0.7)]}
    # TP, FP (gesture already found), TP: precision (1, 1/2, 2/3), recall (1/2, 1/2, 1) -> 1/2 * 1 + 1/2 * 2/3
    assert detection_map(pred, gt, thresholds=(0.5,)).average == pytest.approx(0.5 + 1 / 3)


def test_locked_gesture_falls_back_to_the_next_best():
    gt = {"A": [(1, 0, 10), (1, 2, 14)]}
    # the second prediction overlaps the (locked) first gesture most, but also the second one with tIoU 9/13
    pred = {"A": [(1, 0, 10, 0.9), (1, 1, 11, 0.8)]}
    assert detection_map(pred, gt, thresholds=(0.5,)).average == pytest.approx(1.0)
    assert detection_map(pred, gt, thresholds=(0.7,)).per_class[1] == pytest.approx((0.5,))


def test_sequences_are_kept_apart_and_absent_classes_ignored():
    gt = {"A": [(1, 0, 10)], "B": [(2, 0, 10)]}
    pred = {"B": [(1, 0, 10, 0.9), (2, 0, 10, 0.5), (5, 0, 10, 0.99)], "C": [(2, 0, 10, 0.95)]}
    result = detection_map(pred, gt, thresholds=(0.5,))
    assert result.per_class[1] == (0.0,)  # its only prediction lies in another sequence
    assert result.per_class[2] == pytest.approx((0.5,))  # an unknown sequence's prediction ranks first, a FP
    assert 5 not in result.per_class
    assert result.average == pytest.approx(0.25)


def test_no_predictions():
    result = detection_map({}, {"A": [(1, 0, 10)]})
    assert result.average == 0.0


def test_average_precision_envelope():
    precision = np.array([1.0, 0.5, 2 / 3, 0.5])
    recall = np.array([0.25, 0.25, 0.5, 0.5])
    # envelope: 1 up to recall 1/4, 2/3 up to 1/2, then 0 up to 1
    assert average_precision(precision, recall) == pytest.approx(0.25 + 0.25 * 2 / 3)
    assert average_precision(np.array([]), np.array([])) == 0.0


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="label 18 is not one of 1..17"):
        detection_map({"A": [(18, 0, 1, 0.5)]}, {"A": [(1, 0, 10)]})
    with pytest.raises(ValueError, match="score"):
        detection_map({"A": [(1, 0, 1)]}, {"A": [(1, 0, 10)]})
    with pytest.raises(ValueError, match="no gesture"):
        detection_map({"A": [(1, 0, 1, 0.5)]}, {"A": []})
