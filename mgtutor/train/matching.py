"""Hungarian matching of queries to ground-truth segments (PointTAD's ``models/matcher.py``, after DETR).

A window's q queries each predict a class distribution and a segment; its g ground-truth gestures must
each be assigned a distinct query. The assignment minimises the total of

    C[i, j] = cost_class * (-p_i[label_j])
            + cost_l1    * |centre_i - centre_j| + |length_i - length_j|
            + cost_iou   * (-tIoU(clamp(segment_i, 0, 1), segment_j))

over one-to-one assignments (scipy's ``linear_sum_assignment``); unassigned queries are trained towards
"no object". ``p_i`` is the softmax over all k + 1 classes (no-object included), as in PointTAD; the tIoU
term reads the predicted segment clamped to the window, as PointTAD's ``prop_cl_to_se`` does, while the L1
term reads it unclamped. Defaults 10 / 5 / 5 are PointTAD's ``set_cost_class / set_cost_seg /
set_cost_giou`` and ``TrainConfig.cost_*``.

Shapes: b windows, q queries, k classes (+1 no-object), g ground-truth segments of one window.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment

from mgtutor.model.segments import pairwise_iou, to_centre_length

# a finite stand-in for non-finite costs so the assignment never fails; the loss of such outputs is non-finite
# anyway, and the training loop reports that
_LARGE_COST = 1e8


@torch.no_grad()
def matching_cost(
    logits: torch.Tensor,
    segments: torch.Tensor,
    target_labels: torch.Tensor,
    target_segments: torch.Tensor,
    cost_class: float = 10.0,
    cost_l1: float = 5.0,
    cost_iou: float = 5.0,
) -> torch.Tensor:
    """The (q, g) cost matrix of one window (module docstring).

    Args:
        logits: (q, k + 1) class logits (to match from probabilities, pass their logarithm).
        segments: (q, 2) predicted (start, end), window-normalised.
        target_labels: (g,) 0-based class indices; target_segments: (g, 2) (start, end).

    Returns:
        (q, g) float tensor on the inputs' device.
    """
    if logits.dim() != 2 or segments.shape != (logits.shape[0], 2):
        raise ValueError(
            f"expected logits (q, k+1) and segments (q, 2), got {tuple(logits.shape)} and {tuple(segments.shape)}"
        )
    if target_segments.shape != (len(target_labels), 2):
        raise ValueError(
            f"expected target labels (g,) and segments (g, 2), got {tuple(target_labels.shape)} "
            f"and {tuple(target_segments.shape)}"
        )
    if len(target_labels) and int(target_labels.max()) >= logits.shape[1] - 1:
        raise ValueError(f"target label {int(target_labels.max())} is not below num_classes = {logits.shape[1] - 1}")
    probs = logits.softmax(dim=-1)
    target_segments = target_segments.to(segments.dtype)
    class_term = -probs[:, target_labels]
    l1_term = torch.cdist(to_centre_length(segments), to_centre_length(target_segments), p=1)
    iou_term = -pairwise_iou(segments.clamp(0, 1), target_segments)
    return cost_class * class_term + cost_l1 * l1_term + cost_iou * iou_term


def hungarian_match(
    logits: torch.Tensor,
    segments: torch.Tensor,
    target_labels: torch.Tensor,
    target_segments: torch.Tensor,
    cost_class: float = 10.0,
    cost_l1: float = 5.0,
    cost_iou: float = 5.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum-cost one-to-one assignment of one window's queries to its ground truth.

    Args: as :func:`matching_cost`.

    Returns:
        ``(pred_idx, tgt_idx)``: int64 tensors of length min(q, g) (0 when g = 0), ``pred_idx`` ascending;
        query ``pred_idx[n]`` is assigned to target ``tgt_idx[n]``.
    """
    cost = matching_cost(logits, segments, target_labels, target_segments, cost_class, cost_l1, cost_iou)
    if cost.numel() == 0:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty.clone()
    cost = torch.nan_to_num(cost.double(), nan=_LARGE_COST, posinf=_LARGE_COST, neginf=-_LARGE_COST)
    pred_idx, tgt_idx = linear_sum_assignment(cost.cpu().numpy())
    return torch.as_tensor(pred_idx, dtype=torch.int64), torch.as_tensor(tgt_idx, dtype=torch.int64)


def match_batch(
    logits: torch.Tensor,
    segments: torch.Tensor,
    targets: list[dict[str, torch.Tensor]],
    cost_class: float = 10.0,
    cost_l1: float = 5.0,
    cost_iou: float = 5.0,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`hungarian_match` for each window of a batch.

    Args:
        logits: (b, q, k + 1); segments: (b, q, 2).
        targets: b dicts with ``"labels"`` (g,) and ``"segments"`` (g, 2); g may differ and may be 0.

    Returns:
        b pairs ``(pred_idx, tgt_idx)`` (CPU int64).
    """
    if len(targets) != logits.shape[0]:
        raise ValueError(f"got {len(targets)} targets for a batch of {logits.shape[0]} windows")
    return [
        hungarian_match(
            window_logits, window_segments, target["labels"], target["segments"], cost_class, cost_l1, cost_iou
        )
        for window_logits, window_segments, target in zip(logits, segments, targets)
    ]
