"""The MiGA challenge's F1 for micro-gesture online recognition, as the organisers compute it.

The organisers' starter kit (SMG repository, ``online recognition/SMG/THDutils.py``, function
``tester_SMG``, ``threshold_alpha = 0.3``) scores a test sequence like this:

1. For each ground-truth gesture ``(label, gs, ge)`` in file order, walk the predictions in order; the
   first prediction ``(label, ps, pe)`` with the same label and

       overlap = (min(pe, ge) - max(ps, gs)) / (max(pe, ge) - min(ps, gs)) > alpha      (strictly greater)

   counts one correct detection, and the walk stops for that gesture. Frame numbers are used as given
   (no ``+ 1``): a gesture's length is ``end - start``.
2. The kit then calls ``numpy.delete`` on the prediction arrays but discards the returned copies, so the
   matched prediction is *not* consumed: one prediction can be credited to several ground-truth gestures.
   Consequences: with this rule the order of the predictions does not change the count, and ``correct`` may
   exceed the number of predictions (precision above 1 is possible).
3. Counts are summed over all test sequences before dividing (micro-aggregation):
   recall = sum(correct) / sum(#ground truth), precision = sum(correct) / sum(#predictions),
   F1 = 2 P R / (P + R + 1e-7).

``miga_f1(..., one_to_one=False)`` (the default) reproduces that computation exactly. ``one_to_one=True`` is
the strict variant: the same walk, but a prediction, once credited, is consumed and cannot be credited again
(greedy in the given orders, not an optimal assignment; here the order of the predictions matters).

Cases the kit does not handle, and what this module does instead:
- no predictions at all (or no ground truth): the kit divides by zero and stops with ``ZeroDivisionError``;
  here precision (or recall) is 0. The kit also prints per-sequence figures and so fails on any sequence with
  no predictions; here such a sequence simply contributes zero predictions.
- a sequence in the ground truth but absent from ``predictions`` counts as zero predictions;
- predictions for a sequence absent from the ground truth are counted as predictions (they lower precision),
  as a submission holding them would be judged;
- a zero-length union (``max(pe, ge) == min(ps, gs)``, i.e. identical single-frame segments): the kit's numpy
  arithmetic gives ``nan``, which fails the ``>`` test; here the overlap is 0, with the same outcome.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

OFFICIAL_ALPHA = 0.3  # `threshold_alpha` in the organisers' starter kit


@dataclass(frozen=True)
class SequenceCounts:
    """One sequence's share of the micro-aggregated totals."""

    correct: int
    num_predictions: int
    num_ground_truth: int


@dataclass(frozen=True)
class F1Result:
    """Micro-aggregated precision, recall and F1, their counts, and the per-sequence counts."""

    precision: float
    recall: float
    f1: float
    correct: int
    num_predictions: int
    num_ground_truth: int
    per_sequence: dict[Hashable, SequenceCounts] = field(default_factory=dict)


def miga_overlap(prediction: Sequence[float], ground_truth: Sequence[float]) -> float:
    """The kit's overlap ``(min(pe, ge) - max(ps, gs)) / (max(pe, ge) - min(ps, gs))`` of two gestures.

    Args:
        prediction, ground_truth: ``(label, start_frame, end_frame)``; the labels are ignored here.

    Returns:
        The overlap; negative for disjoint segments (the denominator spans both); 0 when the denominator is 0.
        For overlapping segments it equals their tIoU.
    """
    (_, ps, pe), (_, gs, ge) = prediction, ground_truth
    span = max(pe, ge) - min(ps, gs)
    return (min(pe, ge) - max(ps, gs)) / span if span > 0 else 0.0


def _as_array(gestures: Sequence[Sequence[float]], what: str, width: int = 3) -> np.ndarray:
    """(n, width) float64 array of (label, start, end[, score]) rows, checked; ``what`` names them in errors."""
    array = np.asarray(list(gestures), dtype=np.float64)
    if array.size == 0:
        return np.zeros((0, width))
    if array.ndim != 2 or array.shape[1] != width:
        fields = "(label, start_frame, end_frame" + (", score)" if width == 4 else ")")
        raise ValueError(f"{what} must be {fields} tuples")
    bad = np.flatnonzero(array[:, 1] > array[:, 2])
    if len(bad):
        row = bad[0]
        raise ValueError(
            f"{what}, entry {row}: start frame {array[row, 1]:g} "
            f"is after end frame {array[row, 2]:g}"
        )
    return array


def _hits(pred: np.ndarray, gt: np.ndarray, alpha: float) -> np.ndarray:
    """(ground truth, prediction) bool matrix: same label and overlap > alpha."""
    # the same float64 division as the kit's Python int / int
    ps, pe = pred[None, :, 1], pred[None, :, 2]
    gs, ge = gt[:, None, 1], gt[:, None, 2]
    span = np.maximum(pe, ge) - np.minimum(ps, gs)
    inter = np.minimum(pe, ge) - np.maximum(ps, gs)
    overlap = np.divide(inter, span, out=np.zeros_like(span), where=span > 0)
    return (gt[:, None, 0] == pred[None, :, 0]) & (overlap > alpha)


def _credited(hit: np.ndarray, one_to_one: bool) -> list[int | None]:
    """For each ground-truth gesture (a row of the hit matrix, predictions in order), the index of the first
    prediction that hits it and, with ``one_to_one``, is not yet credited; None when there is none."""
    free = np.ones(hit.shape[1], dtype=bool)
    credited: list[int | None] = []
    for row in hit:
        candidates = np.flatnonzero(row & free)
        credited.append(int(candidates[0]) if len(candidates) else None)
        if one_to_one and len(candidates):
            free[candidates[0]] = False  # consumed: the strict variant; the kit never gets here
    return credited


def _count(hit: np.ndarray, one_to_one: bool) -> int:
    """Credited ground-truth gestures, given the hit matrix with predictions in order."""
    if hit.size == 0:
        return 0
    if not one_to_one:  # nothing is consumed: a gesture counts when any prediction hits it
        return int(hit.any(axis=1).sum())
    return sum(j is not None for j in _credited(hit, one_to_one))


def credited_predictions(
    predictions: Sequence[Sequence[float]],
    ground_truth: Sequence[Sequence[float]],
    alpha: float = OFFICIAL_ALPHA,
    one_to_one: bool = False,
) -> list[int | None]:
    """The walk of one sequence (steps 1-2 above): for each ground-truth gesture in file order, the index of
    the prediction credited to it, or None when it is missed.

    Args: as :func:`correct_detections`, which counts the entries that are not None.
    """
    pred, gt = _as_array(predictions, "predictions"), _as_array(ground_truth, "ground truth")
    return _credited(_hits(pred, gt, alpha), one_to_one)


def correct_detections(
    predictions: Sequence[Sequence[float]],
    ground_truth: Sequence[Sequence[float]],
    alpha: float = OFFICIAL_ALPHA,
    one_to_one: bool = False,
) -> int:
    """Number of ground-truth gestures of one sequence credited with a correct detection (steps 1-2 above).

    Args:
        predictions, ground_truth: lists of ``(label, start_frame, end_frame)``, in order.
        alpha: overlap that must be strictly exceeded.
        one_to_one: consume a prediction once credited (the strict variant).
    """
    pred, gt = _as_array(predictions, "predictions"), _as_array(ground_truth, "ground truth")
    return _count(_hits(pred, gt, alpha), one_to_one)


def _sequence_ids(predictions: Mapping, ground_truth: Mapping) -> list[Hashable]:
    """The ground truth's sequences, then the predictions' others; refuses ids that never meet."""
    if predictions and ground_truth and not set(predictions) & set(ground_truth):
        raise ValueError(
            "no sequence id of the predictions appears in the ground truth "
            f"(e.g. {next(iter(predictions))!r} vs {next(iter(ground_truth))!r}); are the ids spelled the same way?"
        )
    return list(ground_truth) + [s for s in predictions if s not in ground_truth]


def _totals(per_sequence: dict[Hashable, SequenceCounts]) -> F1Result:
    """Micro-aggregation (step 3 above)."""
    correct = sum(c.correct for c in per_sequence.values())
    num_predictions = sum(c.num_predictions for c in per_sequence.values())
    num_ground_truth = sum(c.num_ground_truth for c in per_sequence.values())
    precision = correct / num_predictions if num_predictions else 0.0
    recall = correct / num_ground_truth if num_ground_truth else 0.0
    f1 = 2 * precision * recall / (precision + recall + 1e-7)
    return F1Result(precision, recall, f1, correct, num_predictions, num_ground_truth, per_sequence)


def miga_f1(
    predictions: Mapping[Hashable, Sequence[Sequence[float]]],
    ground_truth: Mapping[Hashable, Sequence[Sequence[float]]],
    alpha: float = OFFICIAL_ALPHA,
    one_to_one: bool = False,
) -> F1Result:
    """The challenge's micro-aggregated F1 (module docstring: the rule, its quirks, the edge cases).

    Args:
        predictions: sequence id -> list of ``(label, start_frame, end_frame)``, labels 1-based as in
            ``SampleXXXX_finelabels.csv``, frames in the original video's numbering.
        ground_truth: the same for the annotations.
        alpha: the overlap threshold (0.3 in the challenge), strictly exceeded.
        one_to_one: False reproduces the organisers' code (a prediction may be credited several times);
            True consumes each credited prediction.

    Returns:
        :class:`F1Result`; ``per_sequence`` covers every sequence of either mapping.
    """
    per_sequence = {}
    for sequence in _sequence_ids(predictions, ground_truth):
        pred = _as_array(predictions.get(sequence, ()), f"predictions for sequence {sequence!r}")
        gt = _as_array(ground_truth.get(sequence, ()), f"ground truth for sequence {sequence!r}")
        per_sequence[sequence] = SequenceCounts(_count(_hits(pred, gt, alpha), one_to_one), len(pred), len(gt))
    return _totals(per_sequence)


def miga_f1_over_thresholds(
    predictions_with_scores: Mapping[Hashable, Sequence[Sequence[float]]],
    ground_truth: Mapping[Hashable, Sequence[Sequence[float]]],
    score_thresholds: Sequence[float],
    alpha: float = OFFICIAL_ALPHA,
    one_to_one: bool = False,
) -> list[F1Result]:
    """:func:`miga_f1` of the predictions scoring >= each threshold, computing the overlaps once.

    Args:
        predictions_with_scores: sequence id -> list of ``(label, start_frame, end_frame, score)``.
        ground_truth, alpha, one_to_one: as :func:`miga_f1`.
        score_thresholds: one result per threshold.

    Returns:
        ``[miga_f1({s: [(l, a, b) for l, a, b, score in p if score >= t] ...}, ground_truth) for t in ...]``.
    """
    hits = {}
    for sequence in _sequence_ids(predictions_with_scores, ground_truth):
        pred = _as_array(predictions_with_scores.get(sequence, ()), f"predictions for sequence {sequence!r}", 4)
        gt = _as_array(ground_truth.get(sequence, ()), f"ground truth for sequence {sequence!r}")
        hits[sequence] = (_hits(pred, gt, alpha), pred[:, 3], len(gt))
    results = []
    for threshold in score_thresholds:
        per_sequence = {}
        for sequence, (hit, scores, num_gt) in hits.items():
            keep = scores >= threshold
            per_sequence[sequence] = SequenceCounts(_count(hit[:, keep], one_to_one), int(keep.sum()), num_gt)
        results.append(_totals(per_sequence))
    return results
