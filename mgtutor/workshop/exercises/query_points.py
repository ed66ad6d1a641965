"""Notebook 07's exercises: eq. 1's point refinement, one deformable-sampling read (eq. 9) and the frame
mix of the dynamic convolution (eq. 13), graded against `mgtutor.model.query_points.refine_points`,
`mgtutor.model.interactive.DeformableSampling` and `mgtutor.model.interactive.DynamicMixing.frame_mix`.

Shapes: b batch, t feature steps, d hidden size, q queries, p points per query, s sub-points per point.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import einsum, rearrange

from mgtutor.model.interactive import DynamicMixing, sample_features
from mgtutor.model.query_points import localisation_points, refine_points
from mgtutor.workshop.check import Case, Exercise, Mistake, register

# -- eq. 1: the scaled point update ------------------------------------------------------------------


def _refine(points, deltas):
    return refine_points(points, deltas)


def _refine_with(located=localisation_points, scale=0.5):
    """Eq. 1 with the segment read from the first ``located(p)`` points (None: no scaling by the length)."""

    def refine(points, deltas):
        if scale is None:
            return points + deltas
        first = points[..., : located(points.shape[-1])]
        length = first.max(-1, keepdim=True).values - first.min(-1, keepdim=True).values
        return points + deltas * scale * length

    return refine


def _refine_cases() -> list[Case]:
    def inputs(b, q, p, dtype=torch.float64):
        points = 0.2 + 0.6 * torch.rand(b, q, p, dtype=dtype)
        located = localisation_points(p)
        points[..., located:] = torch.where(torch.arange(p - located) % 2 == 0, 0.05, 0.95).to(dtype)  # semantic points outside
        return dict(points=points, deltas=torch.randn(b, q, p, dtype=dtype))

    thirty_one = inputs(1, 4, 31)
    thirty_one["points"][..., 20] = 0.15  # the 21st point lies outside the 20 localisation points: it is semantic
    middle = inputs(2, 3, 30)
    middle["points"] = torch.full_like(middle["points"], 0.5)
    return [
        Case("b = 1, q = 16, p = 30", inputs(1, 16, 30)),
        Case("p = 31 (20 localisation points, not 21)", thirty_one),
        Case("b = 2, q = 5, p = 9, float32", inputs(2, 5, 9, dtype=torch.float32)),
        Case("every point at 0.5 (the middle start)", middle),
    ]


REFINE = register(Exercise(
    name="refine",
    minutes=5,
    notebook="07",
    reference=_refine,
    reference_name="mgtutor.model.query_points.refine_points",
    outputs=("refined",),
    cases=_refine_cases,
    mistakes=(
        Mistake(_refine_with(located=lambda p: p),
                "your segment spans all p points: only the first two-thirds locate it (localisation_points(p), "
                "20 of 30); the semantic points may sit outside the segment."),
        Mistake(_refine_with(located=lambda p: p - p // 3),
                "you kept p - p // 3 points (21 of 31): PointTAD's -P//3 is (-P)//3, a floor, which keeps "
                "floor(2p/3) points, 20 of 31: localisation_points(p)."),
        Mistake(_refine_with(scale=1.0),
                "you moved the points by delta * length: eq. 1 takes half the length, x + delta * 0.5 * (max - min)."),
        Mistake(_refine_with(scale=None),
                "your step is not scaled: eq. 1 multiplies delta by half the length of the incoming segment, "
                "x + delta * 0.5 * (max - min), so a short gesture takes small steps (and the middle start none)."),
    ),
))

# -- eq. 9: one deformable-sampling read ----------------------------------------------------------------


def _read(features, points, offsets, logits):
    positions = (points.unsqueeze(-1) + offsets / features.shape[1]).clamp(0.0, 1.0)
    return einsum(sample_features(features, positions), logits.softmax(dim=-1), "b q p s d, b q p s -> b q p d")


def _read_with(divide=lambda t: t, clamp=True, weigh=lambda logits: logits.softmax(dim=-1)):
    """Eq. 9 with the offsets divided by ``divide(t)``, with or without the clamp, weighted by ``weigh``."""

    def read(features, points, offsets, logits):
        positions = points.unsqueeze(-1) + offsets / divide(features.shape[1])
        if clamp:
            positions = positions.clamp(0.0, 1.0)
        return einsum(sample_features(features, positions), weigh(logits), "b q p s d, b q p s -> b q p d")

    return read


def _read_cases() -> list[Case]:
    def inputs(b, t, d, q, p, s, low=0.2, high=0.8, dtype=torch.float64):
        return dict(
            features=torch.randn(b, t, d, dtype=dtype),
            points=low + (high - low) * torch.rand(b, q, p, dtype=dtype),
            offsets=torch.arange(1, s + 1, dtype=dtype) + 0.5 * torch.randn(b, q, p, s, dtype=dtype),
            logits=torch.randn(b, q, p, s, dtype=dtype),
        )

    ends = inputs(1, 16, 4, 2, 6, 4)
    ends["points"][:, 0], ends["points"][:, 1] = 0.97, 0.02  # query 0 near the end, query 1 near the start
    ends["offsets"][:, 1] = -ends["offsets"][:, 1]  # query 1 reads before the start
    return [
        Case("b = 1, t = 32, q = 4, p = 6, s = 4", inputs(1, 32, 8, 4, 6, 4)),
        Case("sub-points past the window's ends", ends),
        Case("b = 2, t = 20, s = 3, float32", inputs(2, 20, 5, 3, 7, 3, dtype=torch.float32)),
        Case("s = 1 (one sub-point a point)", inputs(1, 12, 3, 2, 5, 1)),
    ]


READ = register(Exercise(
    name="read_subpoints",
    minutes=7,
    notebook="07",
    reference=_read,
    reference_name="eq. 9 as DeformableSampling computes it",
    outputs=("point_features",),
    cases=_read_cases,
    mistakes=(
        Mistake(_read_with(divide=lambda t: 1),
                "your sub-points jumped by whole windows: the offsets count feature steps, so a sub-point sits at "
                "x + offset / t on the window's [0, 1] scale (eq. 9)."),
        Mistake(_read_with(divide=lambda t: t - 1),
                "you divided the offsets by t - 1: eq. 9 (and PointTAD's code) divides by t, so one 'step' moves "
                "(t - 1) / t of a feature step."),
        Mistake(_read_with(clamp=False),
                "a sub-point beyond the window's ends read zeros: clamp the positions to [0, 1] before reading, so "
                "that it reads the first or last step (as PointTAD does)."),
        Mistake(_read_with(weigh=lambda logits: logits),
                "you weighted the sub-points by the raw logits: eq. 11's weights are softmax(logits) over the s "
                "sub-points of a point, summing to 1."),
        Mistake(_read_with(weigh=lambda logits: logits.softmax(dim=2)),
                "your softmax runs across the points: each point's s sub-point weights sum to 1, softmax over "
                "the last axis (dim=-1)."),
        Mistake(_read_with(weigh=lambda logits: torch.full_like(logits, 1 / logits.shape[-1])),
                "you averaged the sub-points equally: weigh each by its softmax weight (eq. 9)."),
    ),
))

# -- eq. 13: the frame mix -------------------------------------------------------------------------------


def _frame_mix(point_features, frame, mixing):
    return mixing.frame_mix(point_features, frame)


def _frame_mix_with(pattern="b q k d, b q k j -> b q d j", relu_first=False, relu=True):
    """Eq. 13 with the einsum ``pattern`` (T's axes), the ReLU before the norm or none."""

    def frame_mix(point_features, frame, mixing):
        mixed = einsum(point_features, frame, pattern)
        if relu_first:
            mixed = mixing.frame_norm(F.relu(mixed))
        else:
            mixed = mixing.frame_norm(mixed)
            mixed = F.relu(mixed) if relu else mixed
        return rearrange(mixed, "b q d p -> b q p d")

    return frame_mix


def _frame_mix_cases() -> list[Case]:
    def inputs(b, q, p, d, dtype=torch.float64):
        mixing = DynamicMixing(d, p, mix_dim=2).to(dtype)
        with torch.no_grad():  # a trained-looking norm, so that its gain and shift matter
            mixing.frame_norm.weight.uniform_(0.5, 1.5)
            mixing.frame_norm.bias.normal_(0, 0.3)
        return dict(point_features=torch.randn(b, q, p, d, dtype=dtype), frame=torch.randn(b, q, p, p, dtype=dtype), mixing=mixing)

    return [
        Case("b = 1, q = 3, p = 5, d = 8", inputs(1, 3, 5, 8)),
        Case("b = 2, q = 1, p = 7, d = 4", inputs(2, 1, 7, 4)),
        Case("p = d = 6 (a square)", inputs(1, 2, 6, 6)),
        Case("q = 4, p = 30, d = 16, float32", inputs(1, 4, 30, 16, dtype=torch.float32)),
    ]


FRAME_MIX = register(Exercise(
    name="frame_mix",
    minutes=6,
    notebook="07",
    reference=_frame_mix,
    reference_name="DynamicMixing.frame_mix",
    outputs=("mixed",),
    cases=_frame_mix_cases,
    mistakes=(
        Mistake(_frame_mix_with(pattern="b q k d, b q j k -> b q d j"),
                "you mixed with T transposed: in X^T T, T[k, j] is how much point k feeds point j, so the sum runs "
                "over T's first axis, einsum 'b q k d, b q k j -> b q d j'."),
        Mistake(_frame_mix_with(relu_first=True),
                "the ReLU comes after the LayerNorm: ReLU(LN_p(X^T T)) (eq. 13)."),
        Mistake(_frame_mix_with(relu=False),
                "you left out the ReLU: eq. 13 is ReLU(LN_p(X^T T))^T."),
    ),
))
