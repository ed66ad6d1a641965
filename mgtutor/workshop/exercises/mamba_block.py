"""Notebook 03's exercises: the Mamba block's causal depthwise convolution and its skip and gate,
graded against what `mgtutor.ssm.Mamba` computes (``conv1d`` padded by k - 1, first l outputs; the
scan's ``D`` and ``z``).

Shapes: b batch, d channels (d_inner), l length, k the convolution's width (d_conv).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from mgtutor.workshop.check import Case, Exercise, Mistake, register

# -- the causal depthwise convolution -------------------------------------------------------------


def _conv(u, weight, bias):
    """What Mamba's ``conv1d`` (nn.Conv1d, groups = d, padding = k - 1) keeps: its first l outputs."""
    k, l = weight.shape[-1], u.shape[-1]
    return F.conv1d(u, rearrange(weight, "d k -> d 1 k"), bias, padding=k - 1, groups=u.shape[1])[..., :l]


def _conv_cases() -> list[Case]:
    def inputs(b, d, l, k, dtype=torch.float64):
        return dict(u=torch.randn(b, d, l, dtype=dtype), weight=torch.randn(d, k, dtype=dtype), bias=torch.randn(d, dtype=dtype))

    return [
        Case("b = 2, d = 6, l = 11, k = 4", inputs(2, 6, 11, 4)),
        Case("l = 2, shorter than k = 4", inputs(1, 3, 2, 4)),
        Case("float32, d = 8, l = 33, k = 3", inputs(2, 8, 33, 3, torch.float32)),
        Case("k = 1 (no neighbours)", inputs(1, 4, 5, 1)),
    ]


CAUSAL_CONV = register(Exercise(
    name="causal_conv1d",
    minutes=6,
    notebook="03",
    reference=_conv,
    reference_name="mgtutor.ssm.Mamba's conv1d (padding k - 1, the first l outputs)",
    outputs=("out",),
    cases=_conv_cases,
    mistakes=(
        Mistake(lambda u, weight, bias: F.conv1d(F.pad(u, (0, weight.shape[-1] - 1)), rearrange(weight, "d k -> d 1 k"),
                                                 bias, groups=u.shape[1]),
                "your output at time t uses inputs after t (t .. t + k - 1): a causal convolution pads its k - 1 "
                "zeros on the left only, F.pad(u, (k - 1, 0)), so that output t sees inputs t - k + 1 .. t."),
        Mistake(lambda u, weight, bias: _conv(u, weight.flip(-1), bias),
                "your kernel is flipped: nn.Conv1d computes a cross-correlation, out_t = bias + sum_j w_j u_{t-k+1+j}, "
                "so the last weight w_{k-1} multiplies the current input u_t."),
        Mistake(lambda u, weight, bias: _conv(u, weight, None),
                "you left out conv1d's bias: one number per channel, added after the weighted sum."),
    ),
))

# -- the skip and the gate --------------------------------------------------------------------------


def _gate(y, u, z, D):
    """The end of `mgtutor.ssm.selective_scan` with D and z: out = (y + D u) * silu(z)."""
    return (y + u * rearrange(D, "d -> d 1")) * F.silu(z)


def _gate_cases() -> list[Case]:
    def inputs(b, d, l, dtype=torch.float64):
        return dict(y=torch.randn(b, d, l, dtype=dtype), u=torch.randn(b, d, l, dtype=dtype),
                    z=torch.randn(b, d, l, dtype=dtype), D=torch.randn(d, dtype=dtype))

    return [
        Case("b = 2, d = 5, l = 7", inputs(2, 5, 7)),
        Case("float32, d = l = 16", inputs(1, 16, 16, torch.float32)),
        Case("l = 1", inputs(3, 4, 1)),
    ]


def _skip(u, D):
    return u * rearrange(D, "d -> d 1")


GATE = register(Exercise(
    name="gated_output",
    minutes=3,
    notebook="03",
    reference=_gate,
    reference_name="mgtutor.ssm.selective_scan's skip and gate ((y + D u) * silu(z))",
    outputs=("out",),
    cases=_gate_cases,
    mistakes=(
        Mistake(lambda y, u, z, D: (y + _skip(u, D)) * torch.sigmoid(z),
                "you gated with sigmoid(z); Mamba's gate is silu(z) = z * sigmoid(z) (F.silu)."),
        Mistake(lambda y, u, z, D: y * F.silu(z) + _skip(u, D),
                "you add the skip D u after the gate; the gate multiplies the sum: (y + D u) * silu(z)."),
        Mistake(lambda y, u, z, D: y * F.silu(z),
                "you left out the skip D u: each channel adds D_d times its own input before the gate."),
        Mistake(lambda y, u, z, D: (y + _skip(u, D)) * z,
                "you multiplied by z itself; the gate is silu(z) = z * sigmoid(z)."),
    ),
))
