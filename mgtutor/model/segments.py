"""Temporal segment geometry: tIoU and the (start, end) <-> (centre, length) conversions.

A segment is a pair ``(start, end)`` with ``start <= end`` on the last axis of a tensor. The unit does not
matter: inside a window it is the window-normalised time of ``mgtutor.data.windows``; for evaluation it is a
frame number. Lengths are ``end - start`` (continuous coordinates, no ``+ 1``), the convention of PointTAD's
``util/ops.py`` and of the MiGA challenge's overlap formula.

Every function is differentiable and stays finite on zero-length segments (a zero-length segment has tIoU 0
with everything, itself included), so the losses may call them on raw predictions.

Shapes: ``...`` any batch shape; n, m numbers of segments.
"""

from __future__ import annotations

import torch
from einops import rearrange


def segment_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise temporal IoU of two segment tensors.

    Args:
        a, b: (..., 2) ``(start, end)``; their batch shapes broadcast against each other.

    Returns:
        (...) ``|a ∩ b| / |a ∪ b|`` with ``|a ∪ b| = |a| + |b| - |a ∩ b|``, in [0, 1]; 0 where the union is
        empty. Mirrors PointTAD's ``segment_tiou`` without its ``+1e-8`` in the denominator.
    """
    if a.shape[-1] != 2 or b.shape[-1] != 2:
        raise ValueError(
            f"segments must have a last axis of size 2 (start, end), got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    start_a, end_a = a.unbind(-1)
    start_b, end_b = b.unbind(-1)
    inter = (torch.minimum(end_a, end_b) - torch.maximum(start_a, start_b)).clamp(min=0)
    union = (end_a - start_a) + (end_b - start_b) - inter
    # the clamp keeps the discarded branch of `where` finite, so gradients stay finite at union == 0
    tiny = torch.finfo(union.dtype).tiny if union.is_floating_point() else 1
    return torch.where(union > 0, inter / union.clamp(min=tiny), torch.zeros_like(inter))


def pairwise_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """tIoU of every segment of ``a`` with every segment of ``b``.

    Args:
        a: (n, 2); b: (m, 2) ``(start, end)``.

    Returns:
        (n, m) with entry [i, j] = ``segment_iou(a[i], b[j])``.
    """
    if a.dim() != 2 or b.dim() != 2:
        raise ValueError(f"pairwise_iou expects (n, 2) and (m, 2) tensors, got {tuple(a.shape)} and {tuple(b.shape)}")
    return segment_iou(rearrange(a, "n two -> n 1 two"), rearrange(b, "m two -> 1 m two"))


def to_centre_length(segments: torch.Tensor) -> torch.Tensor:
    """(..., 2) ``(start, end)`` -> (..., 2) ``(centre, length)``; PointTAD's ``prop_se_to_cl``."""
    start, end = segments.unbind(-1)
    return torch.stack(((start + end) / 2, end - start), dim=-1)


def from_centre_length(segments: torch.Tensor) -> torch.Tensor:
    """(..., 2) ``(centre, length)`` -> (..., 2) ``(start, end)``.

    PointTAD's ``prop_cl_to_se`` also clamps to [0, 1]; this one does not, so that it is the exact inverse
    of :func:`to_centre_length` in any unit. Clamp at the call site where the window bounds matter.
    """
    centre, length = segments.unbind(-1)
    return torch.stack((centre - length / 2, centre + length / 2), dim=-1)
