"""Notebook 08's exercises: the Hungarian matching's cost matrix and the class term of the set-prediction
loss, graded against `mgtutor.train.matching.matching_cost` and `mgtutor.train.losses.SetCriterion`.

Shapes: q queries, k classes (+1 no-object, the last index), g ground-truth gestures of one window;
segments are (start, end) in window time.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mgtutor.config import TrainConfig
from mgtutor.model.segments import pairwise_iou, to_centre_length
from mgtutor.train.losses import SetCriterion
from mgtutor.train.matching import matching_cost
from mgtutor.workshop.check import Case, Exercise, Mistake, register

# -- the matching cost -----------------------------------------------------------------------------


def _cost(logits, segments, labels, truth, cost_class, cost_l1, cost_iou):
    return matching_cost(logits, segments, labels, truth, cost_class, cost_l1, cost_iou)


def _cost_by(probability=lambda logits: logits.softmax(-1), l1_of=to_centre_length, clamp_iou=True, clamp_l1=False, iou_sign=-1):
    """The cost with one of its parts changed: the usual slips."""

    def cost(logits, segments, labels, truth, cost_class, cost_l1, cost_iou):
        class_term = -probability(logits)[:, labels]
        seen = segments.clamp(0, 1) if clamp_l1 else segments
        l1_term = (l1_of(seen)[:, None] - l1_of(truth)[None]).abs().sum(-1)
        iou_term = iou_sign * pairwise_iou(segments.clamp(0, 1) if clamp_iou else segments, truth)
        return cost_class * class_term + cost_l1 * l1_term + cost_iou * iou_term

    return cost


def _cost_cases() -> list[Case]:
    def inputs(q, g, k, dtype=torch.float32, spread=(0.0, 1.0), weights=(10.0, 5.0, 5.0)):
        low, high = spread
        start = torch.rand(q, dtype=dtype) * (high - low) * 0.8 + low
        truth_start = torch.rand(g, dtype=dtype) * 0.7
        return dict(
            logits=torch.randn(q, k + 1, dtype=dtype) * 2,
            segments=torch.stack([start, start + torch.rand(q, dtype=dtype) * 0.3 + 0.02], -1),
            labels=torch.randperm(k)[:g],
            truth=torch.stack([truth_start, truth_start + torch.rand(g, dtype=dtype) * 0.3 + 0.05], -1),
            cost_class=weights[0], cost_l1=weights[1], cost_iou=weights[2],
        )

    return [
        Case("q = 12 queries, g = 4 gestures, 17 classes (+ no-object)", inputs(12, 4, 17)),
        Case("segments reaching outside the window, float64", inputs(8, 3, 5, torch.float64, spread=(-0.3, 1.2))),
        Case("one gesture (g = 1)", inputs(6, 1, 17)),
        Case("other weights: class 1, L1 2, tIoU 3", inputs(5, 3, 4, torch.float64, spread=(-0.2, 1.1), weights=(1.0, 2.0, 3.0))),
    ]


PAIR_COST = register(Exercise(
    name="pair_cost",
    minutes=7,
    notebook="08",
    reference=_cost,
    reference_name="mgtutor.train.matching_cost",
    outputs=("cost",),
    cases=_cost_cases,
    rtol=1e-5, atol=1e-5,  # float32 sums in another order
    mistakes=(
        Mistake(_cost_by(probability=lambda logits: logits.log_softmax(-1)),
                "your class term is -log p, the cross-entropy's; the matching cost uses -p itself, the probability "
                "(PointTAD's matcher, after DETR): a cost only has to rank the queries. logits.softmax(-1)[:, labels]."),
        Mistake(_cost_by(probability=lambda logits: logits),
                "your class term reads the raw logits; it is minus the softmax probability of the gesture's class, "
                "-logits.softmax(-1)[:, labels], so that it lies in [-1, 0] like the other terms' scale."),
        Mistake(_cost_by(probability=lambda logits: F.pad(logits[:, :-1].softmax(-1), (0, 1))),
                "your softmax leaves out the no-object class; it runs over all k + 1 classes, so a query sure of "
                "'no object' is expensive for every gesture."),
        Mistake(_cost_by(l1_of=lambda segments: segments),
                "your L1 term compares (start, end); PointTAD's compares (centre, length): "
                "|m_i - m_j| + |l_i - l_j| with centre_length(...)."),
        Mistake(_cost_by(clamp_iou=False),
                "your tIoU reads the predicted segments as they are; the cost clamps them to the window first, "
                "tiou(segments.clamp(0, 1)[:, None], truth[None]) (only the L1 term sees them unclamped)."),
        Mistake(_cost_by(clamp_l1=True),
                "you clamp the segments for the L1 term too; only the tIoU reads them clamped to the window. The L1 "
                "term sees them as predicted, so it still pulls a segment that overshoots the window back."),
        Mistake(_cost_by(probability=lambda logits: -logits.softmax(-1)),
                "your class term is +p: a pair must be cheaper the more probable the gesture's class is, so the "
                "term is -p (and the tIoU term -tIoU)."),
        Mistake(_cost_by(iou_sign=1),
                "your tIoU term is +tIoU: a pair must be cheaper the more its segments overlap, so the term is "
                "-tIoU (as the class term is -p)."),
    ),
))

# -- the class term of the loss ----------------------------------------------------------------------


def _class_term(logits, pred_idx, matched_labels, no_object_weight):
    """SetCriterion's ``class`` term for one window whose queries ``pred_idx`` are matched to ``matched_labels``."""
    k = logits.shape[-1] - 1
    criterion = SetCriterion(TrainConfig(no_object_weight=no_object_weight), k)
    targets = [{"labels": matched_labels, "segments": logits.new_zeros(len(matched_labels), 2)}]
    matches = [(pred_idx, torch.arange(len(matched_labels)))]
    segments = logits.new_zeros(1, logits.shape[0], 2)
    return criterion.layer_losses(logits[None], segments, targets, matches, logits.new_tensor(1.0))["class"]


def _targets(logits, pred_idx, matched_labels):
    classes = torch.full((logits.shape[0],), logits.shape[-1] - 1, dtype=torch.int64)
    classes[pred_idx] = matched_labels
    return classes


def _class_by(weights_of=lambda classes, k, w: torch.where(classes == k, w, 1.0), divide_by_q=False,
              set_matched=True, nll=lambda logits: -logits.log_softmax(-1)):
    def term(logits, pred_idx, matched_labels, no_object_weight):
        k = logits.shape[-1] - 1
        classes = _targets(logits, pred_idx, matched_labels) if set_matched else torch.full((logits.shape[0],), k)
        weight = weights_of(classes, k, no_object_weight).to(logits.dtype)
        loss = nll(logits).gather(1, classes[:, None])[:, 0]
        return (weight * loss).sum() / (logits.shape[0] if divide_by_q else weight.sum())

    return term


def _class_cases() -> list[Case]:
    def inputs(q, k, matched, dtype=torch.float32, weight=0.1):
        pred_idx = torch.randperm(q)[:matched].sort().values
        return dict(logits=torch.randn(q, k + 1, dtype=dtype) * 2, pred_idx=pred_idx,
                    matched_labels=torch.randint(0, k, (matched,)), no_object_weight=weight)

    return [
        Case("q = 12, 17 classes, 4 matched queries", inputs(12, 17, 4)),
        Case("float64, q = 6, 3 classes, 2 matched, no-object weight 0.5", inputs(6, 3, 2, torch.float64, 0.5)),
        Case("every query matched (q = g = 5)", inputs(5, 4, 5)),
        Case("no query matched (a window without gestures)", inputs(7, 17, 0)),
    ]


CLASS_TERM = register(Exercise(
    name="class_term",
    minutes=6,
    notebook="08",
    reference=_class_term,
    reference_name="SetCriterion's 'class' term",
    outputs=("loss",),
    cases=_class_cases,
    rtol=1e-5, atol=1e-6,
    mistakes=(
        Mistake(_class_by(weights_of=lambda classes, k, w: torch.ones(len(classes))),
                "every query weighs 1 in your mean; a query whose target is 'no object' weighs no_object_weight "
                "(0.1): sum_i w_i * nll_i / sum_i w_i. Without it the many unmatched queries drown the gestures."),
        Mistake(_class_by(divide_by_q=True),
                "a weighted mean divides by the sum of the weights, sum_i w_i, not by the number of queries."),
        Mistake(_class_by(weights_of=lambda classes, k, w: torch.where(classes == k, 1.0, w)),
                "your weights are the wrong way round: the no-object targets (class k, the last) get "
                "no_object_weight, the matched queries 1."),
        Mistake(_class_by(set_matched=False),
                "every query's target is 'no object' in yours: the matched queries pred_idx take their gesture's "
                "class, classes[pred_idx] = matched_labels."),
        Mistake(_class_by(nll=lambda logits: -logits.softmax(-1)),
                "you used -p, the matching cost's class term; the loss is the cross-entropy, -log softmax(z)_y "
                "(logits.log_softmax(-1), or F.cross_entropy)."),
    ),
))
