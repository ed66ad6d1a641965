"""Notebook 06's exercises: TensorFlow's "SAME" padding of one axis and I3D's ``Unit3D`` (padded
convolution, BatchNorm without scale, ReLU), graded against `mgtutor.model.i3d`.

Shapes: b batch, c channels (c_in, c_out), t time, h height, w width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mgtutor.model import i3d as lib
from mgtutor.workshop.check import Case, Exercise, Mistake, register

# -- "SAME" padding of one axis -------------------------------------------------------------------


def _same(n, k, s):
    return lib.same_padding(n, k, s)


def _same_by(out=lambda n, s: -(-n // s), clamp=True, odd_after=True):
    def same(n, k, s):
        total = (out(n, s) - 1) * s + k - n
        total = max(total, 0) if clamp else total
        return (total // 2, total - total // 2) if odd_after else (total - total // 2, total // 2)

    return same


def _same_cases() -> list[Case]:
    return [
        Case("Conv3d_1a in space: n = 224, k = 7, s = 2", dict(n=224, k=7, s=2)),
        Case("Conv3d_1a in time: n = 79 frames, k = 7, s = 2", dict(n=79, k=7, s=2)),
        Case("MaxPool3d_2a: n = 112, k = 3, s = 2", dict(n=112, k=3, s=2)),
        Case("a 3x3x3 conv, stride 1: n = 28, k = 3, s = 1", dict(n=28, k=3, s=1)),
        Case("a 1x1x1 conv with stride 2 on n = 8 (k < s)", dict(n=8, k=1, s=2)),
        Case("n = 1: one frame, k = 7, s = 2", dict(n=1, k=7, s=2)),
    ]


SAME_PADDING = register(Exercise(
    name="tf_same_padding",
    minutes=5,
    notebook="06",
    reference=_same,
    reference_name="mgtutor.model.i3d.same_padding",
    outputs=("before", "after"),
    cases=_same_cases,
    mistakes=(
        Mistake(lambda n, k, s: (k // 2, k // 2),
                "that is PyTorch's symmetric padding=k // 2, the same for every input. 'SAME' pads what the last "
                "window needs: the output has ceil(n / s) steps, so total = max((ceil(n / s) - 1) s + k - n, 0), "
                "which depends on n and s."),
        Mistake(_same_by(odd_after=False),
                "the total is right but the odd cell goes before; TensorFlow puts it after: "
                "(total // 2, total - total // 2), so 224 pixels get (2, 3)."),
        Mistake(_same_by(clamp=False),
                "when the kernel is smaller than the stride (a 1x1x1 convolution with stride 2) the last window "
                "fits without padding and your total goes negative: max(..., 0)."),
        Mistake(_same_by(out=lambda n, s: n // s),
                "your output has n // s steps; 'SAME' keeps ceil(n / s), -(-n // s) in integers (79 frames at "
                "stride 2 give 40 steps, not 39)."),
    ),
))

# -- Unit3D: padded convolution, BatchNorm without scale, ReLU ---------------------------------------


def _unit(x, weight, running_mean, running_var, beta, stride):
    """What `mgtutor.model.i3d.Unit3D` (eval mode) computes with these parameters."""
    unit = lib.Unit3D(weight.shape[1], weight.shape[0], kernel=tuple(weight.shape[2:]), stride=stride).to(x.dtype).eval()
    with torch.no_grad():
        unit.conv.weight.copy_(weight)
        unit.bn.running_mean.copy_(running_mean)
        unit.bn.running_var.copy_(running_var)
        unit.bn.bias.copy_(beta)
        return unit(x)


def _view(v):
    return v.view(1, -1, 1, 1, 1)


def _unit_by(pads_of=None, eps=1e-3, relu_first=False, sqrt=True):
    """Unit3D with one part changed; ``pads_of(x, weight, stride)`` gives F.pad's list."""

    def by_hand(x, weight, running_mean, running_var, beta, stride):
        pads = pads_of(x, weight, stride) if pads_of else _pads(x, weight, stride)
        z = F.conv3d(F.pad(x, pads), weight, stride=stride)
        if relu_first:
            z = F.relu(z)
        scale = torch.sqrt(_view(running_var) + eps) if sqrt else _view(running_var) + eps
        y = (z - _view(running_mean)) / scale + _view(beta)
        return y if relu_first else F.relu(y)

    return by_hand


def _pads(x, weight, stride, reverse=True):
    """F.pad's list (last axis first when ``reverse``) of TF "SAME" padding for (t, h, w)."""
    per_axis = [lib.same_padding(n, k, s) for n, k, s in zip(x.shape[2:], weight.shape[2:], stride)]
    return [p for pair in (reversed(per_axis) if reverse else per_axis) for p in pair]


def _symmetric(x, weight, stride):
    return [p for k in reversed(weight.shape[2:]) for p in (k // 2, k // 2)]


def _unit_cases() -> list[Case]:
    def inputs(b, c_in, c_out, size, kernel, stride, dtype=torch.float64):
        return dict(
            x=torch.rand(b, c_in, *size, dtype=dtype) * 2 - 1,
            weight=torch.randn(c_out, c_in, *kernel, dtype=dtype) * 0.3,
            running_mean=torch.randn(c_out, dtype=dtype) * 0.2,
            running_var=torch.rand(c_out, dtype=dtype) * 1.5 + 0.5,
            beta=torch.randn(c_out, dtype=dtype) * 0.2,
            stride=stride,
        )

    return [
        Case("the stem: kernel 7, stride 2, (t, h, w) = (15, 40, 33)", inputs(1, 3, 4, (15, 40, 33), (7, 7, 7), (2, 2, 2))),
        Case("kernel 3, stride 1, (t, h, w) = (5, 9, 8)", inputs(2, 2, 3, (5, 9, 8), (3, 3, 3), (1, 1, 1))),
        Case("kernel (1, 3, 3), stride (1, 2, 2), float32", inputs(1, 3, 5, (6, 11, 7), (1, 3, 3), (1, 2, 2), torch.float32)),
        Case("a 1x1x1 conv (no padding), stride 1", inputs(1, 4, 2, (3, 5, 6), (1, 1, 1), (1, 1, 1))),
    ]


UNIT3D = register(Exercise(
    name="unit3d_by_hand",
    minutes=7,
    notebook="06",
    reference=_unit,
    reference_name="mgtutor.model.i3d.Unit3D (eval mode)",
    outputs=("y",),
    cases=_unit_cases,
    rtol=1e-5, atol=1e-5,  # float32 convolutions sum in another order than the module's
    mistakes=(
        Mistake(_unit_by(pads_of=lambda x, weight, stride: _pads(x, weight, stride, reverse=False)),
                "your padding reaches the wrong axes: F.pad lists the LAST axis first, (w_before, w_after, "
                "h_before, h_after, t_before, t_after), so build the list from the (t, h, w) paddings reversed."),
        Mistake(_unit_by(pads_of=_symmetric),
                "you padded k // 2 on both sides, PyTorch's symmetric padding; TensorFlow's 'SAME' pads what "
                "the last window needs, the odd cell after: i3d_lib.same_padding(n, k, s) for each of t, h, w."),
        Mistake(_unit_by(eps=1e-5),
                "your BatchNorm uses eps = 1e-5, PyTorch's default; Sonnet's BatchNorm in I3D uses eps = 1e-3: "
                "(z - mean) / sqrt(var + 1e-3) + beta."),
        Mistake(_unit_by(sqrt=False),
                "you divide by var + eps; BatchNorm divides by the standard deviation, sqrt(var + eps)."),
        Mistake(_unit_by(relu_first=True),
                "you apply ReLU before the BatchNorm; Unit3D is convolution -> BatchNorm -> ReLU, so the output "
                "is never negative."),
    ),
))
