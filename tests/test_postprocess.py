"""Post-processing: per-query detections, window merging, score threshold, NMS, and the threshold choice."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from mgtutor.data.windows import frames_to_window
from mgtutor.eval.miga_f1 import miga_f1
from mgtutor.eval.postprocess import (
    Detection,
    WindowDetections,
    as_gestures,
    filter_detections,
    merge_windows,
    meta_to_frames,
    nms,
    query_detections,
    select_threshold,
    window_detections,
)


def linear_frames(first_frame, frames_per_window):
    """A stand-in for ``window_to_frames`` with a window's parameters bound: u -> first + u * length."""
    return lambda segments: first_frame + np.asarray(segments) * frames_per_window


def test_query_detections_by_hand():
    logits = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 5.0]])  # k = 2, no object = index 2
    segments = torch.tensor([[-0.1, 0.4], [0.5, 1.3]])
    labels, scores, clamped = query_detections(logits, segments)
    z0 = math.e + math.e**2 + 1
    z1 = 2 + math.e**5
    assert labels.tolist() == [1, 0]  # the first of equal probabilities for query 1
    assert scores.tolist() == pytest.approx([math.e**2 / z0, 1 / z1])
    torch.testing.assert_close(clamped, torch.tensor([[0.0, 0.4], [0.5, 1.0]]))
    with pytest.raises(ValueError, match="expected segments"):
        query_detections(logits, segments[:1])


def test_window_detections_maps_with_the_given_function():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    segments = torch.tensor([[0.25, 0.5], [0.75, 1.2]])
    window = window_detections(logits, segments, linear_frames(100, 128))
    assert window.extent == (100.0, 228.0)
    assert [(d.label, d.start, d.end) for d in window.detections] == [(1, 132.0, 164.0), (2, 196.0, 228.0)]
    assert window.detections[0].score == pytest.approx(math.e**4 / (math.e**4 + 2))


def test_window_detections_with_the_data_mapping():
    # gestures in original frames (30 fps) -> window coordinates (10 fps, window of 64 starting at 40) and back
    meta = {"sequence": 1, "start": 40, "window": 64, "fps": 10.0, "source_fps": 30.0, "num_frames": 900}
    gestures = np.array([[150, 170], [200, 290], [120, 121]])
    segments = torch.from_numpy(frames_to_window(gestures, 40, 64, 30.0, 10.0))
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [5.0, 0.0, 0.0]])
    window = window_detections(logits, segments, meta_to_frames(meta))
    assert [(d.start, d.end) for d in window.detections] == [tuple(g) for g in gestures.tolist()]
    assert window.extent == (120, 311)  # sampled positions 40 .. 103 show original frames 120 .. 311


def test_merge_keeps_everything_when_windows_do_not_overlap():
    a = WindowDetections((0, 127), [Detection(1, 0, 5, 0.5), Detection(2, 120, 127, 0.4)])
    b = WindowDetections((128, 255), [Detection(3, 128, 130, 0.9), Detection(1, 200, 255, 0.3)])
    merged = merge_windows([b, a])
    assert merged == sorted(a.detections + b.detections, key=lambda d: (d.start, d.end, d.label))


def test_merge_splits_the_end_aligned_overlap_at_the_centres_midpoint():
    # windows (0, 128), (128, 256), end-aligned (172, 300): centres 64, 192, 236, so the overlap splits at 214
    first = WindowDetections((0, 128), [Detection(1, 10, 20, 0.9)])
    middle = WindowDetections(
        (128, 256),
        [
            Detection(1, 190, 210, 0.8),  # centre 200: kept
            Detection(2, 210, 230, 0.8),  # centre 220: the last window sees it more centrally -> dropped
            Detection(3, 180, 240, 0.7),  # centre 210, also found by the last window -> kept here
            Detection(4, 204, 224, 0.6),  # centre 214, equidistant -> the earlier window keeps it
        ],
    )
    last = WindowDetections(
        (172, 300),
        [
            Detection(5, 200, 220, 0.8),  # centre 210 -> dropped
            Detection(3, 182, 238, 0.9),  # the duplicate of label 3 -> dropped
            Detection(6, 220, 240, 0.5),  # centre 230 -> kept
            Detection(4, 206, 222, 0.9),  # centre 214 -> dropped (tie)
        ],
    )
    merged = merge_windows([last, middle, first])
    assert [(d.label, d.start) for d in merged] == [(1, 10), (3, 180), (1, 190), (4, 204), (6, 220)]


def test_nms_by_hand():
    detections = [
        Detection(1, 0, 10, 0.8),
        Detection(1, 1, 11, 0.9),  # tIoU 9/11 with the first, higher score: keeps
        Detection(2, 1, 11, 0.7),  # another class: untouched
        Detection(1, 20, 30, 0.6),
    ]
    assert nms(detections, 0.5) == detections[1:]
    assert nms(detections, 0.9) == detections
    assert nms([], 0.5) == []


def test_nms_threshold_is_strict_and_greedy():
    pair = [Detection(1, 0, 10, 0.9), Detection(1, 0, 5, 0.8)]  # tIoU exactly 0.5
    assert nms(pair, 0.5) == pair
    assert nms(pair, 0.4) == pair[:1]
    # (5, 15) is suppressed by (0, 10) (tIoU 1/3), so it cannot suppress (10, 20) any more
    chain = [Detection(1, 0, 10, 0.9), Detection(1, 5, 15, 0.8), Detection(1, 10, 20, 0.7)]
    assert nms(chain, 0.3) == [chain[0], chain[2]]


def test_threshold_and_nms_commute():
    rng = random.Random(0)
    for _ in range(50):
        detections = []
        for _ in range(15):
            s = rng.uniform(0, 50)
            detections.append(Detection(rng.randint(1, 2), s, s + rng.uniform(1, 15), rng.random()))
        threshold, iou = rng.random(), rng.choice([0.2, 0.5])
        direct = filter_detections(detections, threshold, iou)
        assert direct == [d for d in nms(detections, iou) if d.score >= threshold]
    assert filter_detections(detections, 0.5) == [d for d in detections if d.score >= 0.5]


def test_a_score_equal_to_the_threshold_is_kept():
    at, below, above = Detection(1, 0, 10, 0.5), Detection(2, 0, 10, 0.4999), Detection(3, 0, 10, 0.75)
    assert filter_detections([at, below, above], 0.5) == [at, above]
    assert filter_detections([at], 0.5, nms_iou=0.3) == [at]


def test_select_threshold_finds_the_best_setting():
    ground_truth = {"S1": [(1, 0, 10), (2, 20, 30)], "S2": [(3, 0, 40)]}
    predictions = {
        "S1": [
            Detection(1, 1, 10, 0.85),  # a duplicate of the next, scored higher
            Detection(1, 0, 10, 0.8),
            Detection(2, 20, 30, 0.7),
            Detection(2, 50, 60, 0.5),  # false
        ],
        "S2": [Detection(3, 0, 38, 0.65), Detection(1, 0, 38, 0.3)],  # true, false
    }
    grid = {"score_thresholds": (0.0, 0.4, 0.6, 0.75), "nms_ious": (None, 0.5)}
    selection = select_threshold(predictions, ground_truth, **grid)
    # without NMS the duplicate costs precision at every threshold; with NMS at 0.5 and threshold 0.6 the
    # kept detections are exactly one per gesture
    assert (selection.score_threshold, selection.nms_iou) == (0.6, 0.5)
    assert (selection.f1.correct, selection.f1.num_predictions, selection.f1.num_ground_truth) == (3, 3, 3)
    assert len(selection.tried) == 8
    no_nms_at_06 = next(f1 for t, iou, f1 in selection.tried if t == 0.6 and iou is None)
    assert no_nms_at_06 == pytest.approx(2 * 0.75 * 1.0 / (1.75 + 1e-7))  # 3 of 4 predictions right
    with pytest.raises(ValueError, match="at least one"):
        select_threshold(predictions, ground_truth, score_thresholds=())


def test_select_threshold_prefers_the_first_of_equal_settings():
    ground_truth = {"S1": [(1, 0, 10)]}
    predictions = {"S1": [Detection(1, 0, 10, 0.9)]}
    selection = select_threshold(predictions, ground_truth, score_thresholds=(0.1, 0.5), nms_ious=(None, 0.5))
    assert (selection.score_threshold, selection.nms_iou) == (0.1, None)


def test_windows_to_f1_end_to_end():
    # two windows of 128 frames over a 256-frame sequence, one confident query each, the rest "no object"
    logits = torch.full((2, 4, 4), -3.0)
    logits[:, :, 3] = 3.0
    logits[0, 1] = torch.tensor([6.0, 0.0, 0.0, 0.0])
    logits[1, 2] = torch.tensor([0.0, 0.0, 6.0, 0.0])
    segments = torch.rand(2, 4, 2).sort(-1).values
    segments[0, 1] = torch.tensor([0.25, 0.5])
    segments[1, 2] = torch.tensor([0.5, 0.75])
    windows = [window_detections(logits[w], segments[w], linear_frames(128 * w, 128)) for w in range(2)]
    detections = filter_detections(merge_windows(windows), score_threshold=0.5)
    assert as_gestures(detections) == [(1, 32.0, 64.0), (3, 192.0, 224.0)]
    result = miga_f1({"S": as_gestures(detections)}, {"S": [(1, 30, 66), (3, 190, 220)]})
    assert result.correct == 2 and result.num_predictions == 2


def test_select_threshold_scores_every_setting_as_miga_f1_does():
    rng = random.Random(2)
    ground_truth, predictions = {}, {}
    for sequence in range(3):
        ground_truth[sequence] = [(rng.randint(1, 3), s, s + rng.randint(5, 20)) for s in rng.sample(range(200), 6)]
        predictions[sequence] = [
            Detection(rng.randint(1, 3), s, s + rng.randint(5, 20), rng.random()) for s in rng.sample(range(200), 25)
        ]
    for one_to_one in (False, True):
        selection = select_threshold(
            predictions, ground_truth, (0.0, 0.3, 0.6, 0.9), (None, 0.2, 0.6), one_to_one=one_to_one
        )
        for threshold, nms_iou, f1 in selection.tried:
            kept = {s: as_gestures(filter_detections(d, threshold, nms_iou)) for s, d in predictions.items()}
            assert f1 == miga_f1(kept, ground_truth, one_to_one=one_to_one).f1
        assert selection.f1.f1 == max(f1 for _, _, f1 in selection.tried)
