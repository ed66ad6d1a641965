"""From the detector's per-query outputs to a sequence's detections, and choosing what to keep.

The path a test sequence takes (docs/reference.md, sections 1 and 3):

1. per window, :func:`query_detections`: softmax over the k + 1 classes, drop "no object", and give each
   query its best class and that class's probability as score (PointTAD's ``PostProcess``); segments are
   clamped to the window, as PointTAD's ``prop_cl_to_se`` does;
2. :func:`window_detections` maps them to original frame numbers with a mapping passed in by the caller:
   ``mgtutor.data.windows.window_to_frames`` with the window's parameters bound (:func:`meta_to_frames`
   binds them from a dataset item's ``meta``), the one mapping between window coordinates and frames;
3. :func:`merge_windows` joins a sequence's windows. Test windows do not overlap, except the last one,
   aligned to the sequence's end, which overlaps its predecessor. Each detection is kept only by the window
   that sees it most centrally: a detection survives when the centre of its segment is nearer to its own
   window's centre than to any other window's (ties go to the earlier window). Where windows do not
   overlap this keeps everything (a clamped segment's centre lies in its window); in the overlap it splits
   the shared span at the midpoint between the two window centres, so a gesture seen by both windows is
   reported once, by the window with more context around it;
4. :func:`filter_detections`: keep scores >= a threshold, then optionally per-class greedy NMS (a detection
   is dropped when its tIoU with a higher-scored kept detection of the same class exceeds ``nms_iou``).
   The two steps commute: a detection above the threshold can only be suppressed by a higher-scored one.
   :func:`apply_postprocessing` does it for every sequence with the two settings of an object holding
   them (the configuration's ``eval`` section, or a choice).

Every extra detection lowers the challenge's precision, so the threshold and the NMS setting matter.
:func:`select_threshold` picks them by the official F1 on the *training* split's predictions; choosing them
on the test split would be fitting the test set. Nothing here can tell the splits apart: the argument names
say which one belongs there.

Frame segments use the continuous convention of :mod:`mgtutor.eval.miga_f1` (length ``end - start``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from mgtutor.data.windows import window_to_frames
from mgtutor.eval.miga_f1 import OFFICIAL_ALPHA, F1Result, miga_f1_over_thresholds
from mgtutor.model.segments import pairwise_iou

DEFAULT_SCORE_THRESHOLDS = tuple(round(0.02 * i, 2) for i in range(50))  # 0.00, 0.02, ..., 0.98
DEFAULT_NMS_IOUS = (None, 0.3, 0.5, 0.7)  # None: no NMS


class Detection(NamedTuple):
    """One detection of a sequence: 1-based label, original frames, score."""

    label: int
    start: float
    end: float
    score: float


@dataclass(frozen=True)
class WindowDetections:
    """One window's detections and the span of original frames the window covers."""

    extent: tuple[float, float]
    detections: list[Detection]


def query_detections(logits: torch.Tensor, segments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each query's best real class, its probability, and its segment clamped to the window.

    Args:
        logits: (..., q, k + 1) class logits of the last decoder layer (index k = no object).
        segments: (..., q, 2) normalised (start, end).

    Returns:
        ``labels`` (..., q) int64 0-based, ``scores`` (..., q), ``segments`` (..., q, 2) in [0, 1].
    """
    if segments.shape != (*logits.shape[:-1], 2):
        raise ValueError(f"expected segments {(*logits.shape[:-1], 2)} for logits {tuple(logits.shape)}")
    probs = logits.float().softmax(dim=-1)
    scores, labels = probs[..., :-1].max(dim=-1)
    return labels, scores, segments.float().clamp(0, 1)


def meta_to_frames(meta: Mapping[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    """The window -> original frames mapping of one window, from a dataset item's ``meta`` (keys ``start``,
    ``window``, ``fps``, ``source_fps``, ``num_frames``): ``window_to_frames`` with those bound."""
    return functools.partial(
        window_to_frames,
        window_start=meta["start"],
        window=meta["window"],
        source_fps=meta["source_fps"],
        fps=meta["fps"],
        num_frames=meta["num_frames"],
    )


def window_detections(
    logits: torch.Tensor, segments: torch.Tensor, to_frames: Callable[[np.ndarray], np.ndarray]
) -> WindowDetections:
    """One window's queries as detections in original frames.

    Args:
        logits: (q, k + 1); segments: (q, 2) normalised, of one window (last decoder layer).
        to_frames: maps (n, 2) window coordinates to (n, 2) original-frame segments for this window,
            normally :func:`meta_to_frames` of the window's ``meta``; the window's own extent is
            ``to_frames([[0, 1]])``.

    Returns:
        :class:`WindowDetections` with one detection per query (labels 1-based), unfiltered.
    """
    labels, scores, clamped = query_detections(logits, segments)
    frames = np.asarray(to_frames(clamped.detach().cpu().double().numpy()))
    extent = np.asarray(to_frames(np.array([[0.0, 1.0]])))[0]
    detections = [
        Detection(int(label) + 1, start.item(), end.item(), float(score))
        for label, score, (start, end) in zip(labels.tolist(), scores.tolist(), frames)
    ]
    return WindowDetections((extent[0].item(), extent[1].item()), detections)


def merge_windows(windows: Sequence[WindowDetections]) -> list[Detection]:
    """A sequence's detections from all its windows, each kept by the window that sees it most centrally.

    Args:
        windows: every window of one sequence, in any order.

    Returns:
        The kept detections, sorted by (start, end, label).
    """
    windows = sorted(windows, key=lambda w: w.extent)
    centres = np.array([(w.extent[0] + w.extent[1]) / 2 for w in windows])
    kept = []
    for index, window in enumerate(windows):
        for detection in window.detections:
            distance = np.abs(centres - (detection.start + detection.end) / 2)
            if int(np.argmin(distance)) == index:  # argmin takes the first of equals: the earlier window
                kept.append(detection)
    return sorted(kept, key=lambda d: (d.start, d.end, d.label))


def nms(detections: Sequence[Detection], iou_threshold: float) -> list[Detection]:
    """Per-class greedy non-maximum suppression on frame segments.

    Detections are visited by decreasing score (equal scores in the given order); one is dropped when its
    tIoU with an already kept detection of the same class is greater than ``iou_threshold``. The kept
    detections keep their input order.
    """
    keep = np.zeros(len(detections), dtype=bool)
    labels = np.array([d.label for d in detections])
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[np.argsort([-detections[i].score for i in members], kind="stable")]
        segments = torch.tensor([[detections[i].start, detections[i].end] for i in members], dtype=torch.float64)
        iou = pairwise_iou(segments, segments).numpy()
        kept_here = np.zeros(len(members), dtype=bool)
        for rank in range(len(members)):
            kept_here[rank] = not np.any(iou[rank, kept_here] > iou_threshold)
        keep[members[kept_here]] = True
    return [d for d, k in zip(detections, keep) if k]


def filter_detections(
    detections: Sequence[Detection], score_threshold: float, nms_iou: float | None = None
) -> list[Detection]:
    """Detections with score >= ``score_threshold``, then per-class NMS at ``nms_iou`` (None: no NMS)."""
    kept = [d for d in detections if d.score >= score_threshold]
    return kept if nms_iou is None else nms(kept, nms_iou)


class Settings(Protocol):
    """What post-processing needs: a :class:`Selection`, ``cfg.eval`` (:class:`~mgtutor.config.EvalConfig`)
    or :class:`mgtutor.eval.pipeline.Postprocessing` all have these two."""

    score_threshold: float | None
    nms_iou: float | None


def postprocessing_settings(settings: Settings) -> tuple[float, float | None]:
    """``(score_threshold, nms_iou)`` of ``settings`` (``nms_iou`` None: no NMS), checked."""
    if settings.score_threshold is None:
        raise ValueError(
            "eval.score_threshold is not set: choose it (mgtutor.eval.pipeline.resolve_postprocessing), "
            "or set it (e.g. --set eval.score_threshold=0.3)"
        )
    if settings.nms_iou is not None and not 0 <= settings.nms_iou <= 1:
        raise ValueError(f"eval.nms_iou must lie in [0, 1] (or be null for no NMS), got {settings.nms_iou}")
    return float(settings.score_threshold), settings.nms_iou


def apply_postprocessing(raw: Mapping[Hashable, Sequence[Detection]], settings: Settings) -> dict[Hashable, list[Detection]]:
    """Each sequence's raw detections with scores >= the threshold, then per-class NMS when set
    (:func:`filter_detections` with :func:`postprocessing_settings`)."""
    threshold, nms_iou = postprocessing_settings(settings)
    return {sample: filter_detections(found, threshold, nms_iou) for sample, found in raw.items()}


def as_gestures(detections: Sequence[Detection]) -> list[tuple[int, float, float]]:
    """``(label, start, end)`` triples, the input of :func:`~mgtutor.eval.miga_f1.miga_f1`."""
    return [(d.label, d.start, d.end) for d in detections]


@dataclass(frozen=True)
class Selection:
    """The chosen score threshold and NMS setting, their training F1, and every setting tried."""

    score_threshold: float
    nms_iou: float | None
    f1: F1Result
    tried: list[tuple[float, float | None, float]]  # (score threshold, nms iou, F1)


def select_threshold(
    train_predictions: Mapping[Hashable, Sequence[Detection]],
    train_ground_truth: Mapping[Hashable, Sequence[Sequence[float]]],
    score_thresholds: Sequence[float] = DEFAULT_SCORE_THRESHOLDS,
    nms_ious: Sequence[float | None] = DEFAULT_NMS_IOUS,
    alpha: float = OFFICIAL_ALPHA,
    one_to_one: bool = False,
) -> Selection:
    """The score threshold and NMS setting that maximise the challenge's F1 on the training split.

    Args:
        train_predictions: training sequence id -> merged, unfiltered detections (:func:`merge_windows`).
        train_ground_truth: training sequence id -> ``(label, start_frame, end_frame)``, labels 1-based.
        score_thresholds, nms_ious: the grid (``None`` in ``nms_ious`` means no NMS).
        alpha, one_to_one: passed to :func:`~mgtutor.eval.miga_f1.miga_f1`.

    Returns:
        :class:`Selection`; among equal F1s the first in grid order (NMS settings outer, thresholds inner).
        Never pass test-split predictions here: the chosen values would then be fitted to the test set.
    """
    if not score_thresholds or not nms_ious:
        raise ValueError("select_threshold needs at least one score threshold and one NMS setting")
    best: tuple[float, float | None, F1Result] | None = None
    tried = []
    for nms_iou in nms_ious:
        # NMS once per setting: it commutes with the score threshold (module docstring)
        suppressed = {s: list(d) if nms_iou is None else nms(d, nms_iou) for s, d in train_predictions.items()}
        results = miga_f1_over_thresholds(suppressed, train_ground_truth, score_thresholds, alpha, one_to_one)
        for threshold, result in zip(score_thresholds, results):
            tried.append((threshold, nms_iou, result.f1))
            if best is None or result.f1 > best[2].f1:
                best = (threshold, nms_iou, result)
    return Selection(best[0], best[1], best[2], tried)
