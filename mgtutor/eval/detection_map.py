"""Detection-mAP over tIoU thresholds 0.1:0.1:0.9, as PointTAD reports it (ActivityNet-style).

PointTAD's ``datasets/evaluate.py`` (``compute_average_precision_detection``, after the ActivityNet and
Pascal VOC devkits) computes, for each class and each tIoU threshold:

1. the class's predictions over all sequences, sorted by decreasing score;
2. each prediction, in that order, is a true positive when some not-yet-matched ground-truth gesture of the
   same class and sequence has tIoU >= threshold with it (the one with the highest tIoU among those), which
   it then locks; otherwise it is a false positive (duplicates of a found gesture are false positives);
3. AP = the area under the precision-recall curve with VOC 2011's interpolation: precision replaced by its
   running maximum from the right (the "envelope"), summed over every point where recall changes
   (all points, not the 11-point variant);

then mAP at a threshold = the mean AP over classes, and the headline figure = the mean over thresholds.

Conventions here, and where they differ from PointTAD's script:
- segments are in original frame numbers, used as continuous coordinates with no ``+ 1`` (length
  ``end - start``), the convention of :mod:`mgtutor.eval.miga_f1`: for two overlapping gestures the
  challenge's overlap and this tIoU are the same number. tIoU is exact (PointTAD adds ``1e-4`` seconds to
  the union), and a zero-length union gives 0.
- the mean runs over the classes that occur in the ground truth (PointTAD averages over all of its
  dataset's classes, which all occur in its test sets); predictions of other classes do not enter it.
- thresholds are the decimal values 0.1, 0.2, ..., 0.9 (``np.arange(0.1, 1.0, 0.1)`` in PointTAD gives
  e.g. 0.30000000000000004; the difference matters only for a tIoU exactly on a threshold).
- equal scores keep the predictions' given order (a stable sort).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mgtutor.model.segments import pairwise_iou

DEFAULT_THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(1, 10))


@dataclass(frozen=True)
class MapResult:
    """mAP at each threshold, their mean, and each ground-truth class's AP at each threshold."""

    thresholds: tuple[float, ...]
    mean_ap: tuple[float, ...]
    average: float
    per_class: dict[int, tuple[float, ...]]


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC 2011 interpolated AP (all points) of a ranked list's precision and recall (PointTAD's
    ``interpolated_prec_rec``): sentinels (recall 0, precision 0) and (recall 1, precision 0), precision made
    non-increasing from the right, then sum of (recall step) x precision where recall changes."""
    mprec = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mprec[steps]))


def _class_ap(
    predictions: list[tuple[Hashable, float, float, float]],
    ground_truth: dict[Hashable, np.ndarray],
    thresholds: Sequence[float],
) -> np.ndarray:
    """AP at each threshold for one class: predictions (sequence, start, end, score); ground truth
    sequence -> (g, 2) segments."""
    num_gt = sum(len(g) for g in ground_truth.values())
    order = sorted(range(len(predictions)), key=lambda i: -predictions[i][3])
    # tIoU of every prediction with the gestures of its sequence, computed once per sequence
    ious: dict[int, np.ndarray] = {}
    by_sequence: dict[Hashable, list[int]] = {}
    for i, (sequence, *_) in enumerate(predictions):
        by_sequence.setdefault(sequence, []).append(i)
    for sequence, indices in by_sequence.items():
        gt = ground_truth.get(sequence, np.zeros((0, 2)))
        segments = torch.tensor([predictions[i][1:3] for i in indices], dtype=torch.float64)
        table = pairwise_iou(segments, torch.from_numpy(gt)).numpy()
        ious.update(zip(indices, table))
    ap = np.zeros(len(thresholds))
    for t, threshold in enumerate(thresholds):
        locked = {sequence: np.zeros(len(g), dtype=bool) for sequence, g in ground_truth.items()}
        tp = np.zeros(len(order))
        for rank, i in enumerate(order):
            iou = ious[i]
            if len(iou) == 0:
                continue
            free = locked[predictions[i][0]]
            candidates = np.where(~free & (iou >= threshold), iou, -1.0)
            best = int(np.argmax(candidates))
            if candidates[best] >= 0:
                free[best] = True
                tp[rank] = 1
        true_positives = np.cumsum(tp)
        precision = true_positives / np.arange(1, len(order) + 1)
        ap[t] = average_precision(precision, true_positives / num_gt)
    return ap


def _check(gestures: Sequence[Sequence[float]], width: int, what: str, num_classes: int) -> list[tuple]:
    rows = [tuple(g) for g in gestures]
    for n, row in enumerate(rows):
        if len(row) != width:
            fields = "(label, start_frame, end_frame" + (", score)" if width == 4 else ")")
            raise ValueError(f"{what}, entry {n}: expected {fields}, got {row!r}")
        if not 1 <= row[0] <= num_classes or int(row[0]) != row[0]:
            raise ValueError(f"{what}, entry {n}: label {row[0]!r} is not one of 1..{num_classes}")
        if row[1] > row[2]:
            raise ValueError(f"{what}, entry {n}: start frame {row[1]:g} is after end frame {row[2]:g}")
    return rows


def detection_map(
    predictions_with_scores: Mapping[Hashable, Sequence[Sequence[float]]],
    ground_truth: Mapping[Hashable, Sequence[Sequence[float]]],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    num_classes: int = 17,
) -> MapResult:
    """Mean average precision at each tIoU threshold and averaged over them (module docstring).

    Args:
        predictions_with_scores: sequence id -> list of ``(label, start_frame, end_frame, score)``,
            labels 1-based.
        ground_truth: sequence id -> list of ``(label, start_frame, end_frame)``.
        thresholds: tIoU thresholds; a prediction needs tIoU >= threshold.
        num_classes: labels must lie in 1..num_classes.

    Returns:
        :class:`MapResult`; ``per_class`` is keyed by 1-based label.
    """
    gt_by_class: dict[int, dict[Hashable, list]] = {}
    for sequence, gestures in ground_truth.items():
        for label, start, end in _check(gestures, 3, f"ground truth for sequence {sequence!r}", num_classes):
            gt_by_class.setdefault(int(label), {}).setdefault(sequence, []).append((start, end))
    if not gt_by_class:
        raise ValueError("the ground truth holds no gesture, so no average precision is defined")
    pred_by_class: dict[int, list] = {}
    for sequence, detections in predictions_with_scores.items():
        what = f"predictions for sequence {sequence!r}"
        for label, start, end, score in _check(detections, 4, what, num_classes):
            pred_by_class.setdefault(int(label), []).append((sequence, start, end, score))
    per_class = {}
    for label in sorted(gt_by_class):
        gt = {sequence: np.asarray(rows, dtype=np.float64) for sequence, rows in gt_by_class[label].items()}
        per_class[label] = tuple(_class_ap(pred_by_class.get(label, []), gt, thresholds).tolist())
    mean_ap = np.mean(np.array(list(per_class.values())), axis=0)
    return MapResult(tuple(float(t) for t in thresholds), tuple(mean_ap.tolist()), float(mean_ap.mean()), per_class)
