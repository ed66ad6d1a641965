"""Inception-I3D (RGB stream), as released by DeepMind with "Quo Vadis, Action Recognition?", and PointTAD's
detection variant of it.

Glossary of shapes: b batch, c channels, t time (frames), h height, w width, k classes, d hidden size.
A clip is (b, 3, t, h, w) in [-1, 1] (the release's input range).

The network is the original one, layer for layer (Carreira & Zisserman 2017; the public ``kinetics-i3d``
``i3d.py``): every convolution is a ``Unit3D`` (conv without bias -> BatchNorm without scale, eps 1e-3 ->
ReLU) padded like TensorFlow's "SAME" (computed from the input size, one more pixel after than before
when the padding is odd); max pools are padded the same way. The endpoints, in order:

=================  =========================================  ==================
endpoint           layer                                      channels out
=================  =========================================  ==================
Conv3d_1a_7x7      conv 7x7x7, stride 2                       64
MaxPool3d_2a_3x3   max pool (1,3,3), stride (1,2,2)           64
Conv3d_2b_1x1      conv 1x1x1                                 64
Conv3d_2c_3x3      conv 3x3x3                                 192
MaxPool3d_3a_3x3   max pool (1,3,3), stride (1,2,2)           192
Mixed_3b, 3c       Inception modules                          256, 480
MaxPool3d_4a_3x3   max pool (3,3,3), stride 2                 480
Mixed_4b .. 4f     Inception modules                          512, 512, 512, 528, 832
MaxPool3d_5a_2x2   max pool (2,2,2), stride 2                 832
Mixed_5b, 5c       Inception modules                          832, 1024
Logits             avg pool (2,7,7) VALID, dropout, 1x1x1     k (mean over time)
=================  =========================================  ==================

So time is divided by 8 (Conv3d_1a, MaxPool3d_4a, MaxPool3d_5a) and space by 32. PointTAD's detection
backbone keeps more time: its MaxPool3d_5a pools (1,2,2) with stride (1,2,2), so only Conv3d_1a and
MaxPool3d_4a halve time and Mixed_4f and Mixed_5c both have t/4 steps (``temporal_stride=4``). With
"SAME" padding each halving gives ceil(t/2), so a window of t = 4m frames gives exactly m steps.

Inside an Inception module the four branches are named as in the common PyTorch port
(TF scope -> name): Branch_0/Conv3d_0a_1x1 -> b0, Branch_1/Conv3d_0a_1x1 -> b1a, Branch_1/Conv3d_0b_3x3
-> b1b, Branch_2/Conv3d_0a_1x1 -> b2a, Branch_2/Conv3d_0b_3x3 -> b2b, Branch_3 max pool (3,3,3) then
Branch_3/Conv3d_0b_1x1 -> b3b. A ``Unit3D`` holds ``conv`` and ``bn``; the classifier is ``logits.conv``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import reduce
from torch import nn

ENDPOINTS = (
    "Conv3d_1a_7x7",
    "MaxPool3d_2a_3x3",
    "Conv3d_2b_1x1",
    "Conv3d_2c_3x3",
    "MaxPool3d_3a_3x3",
    "Mixed_3b",
    "Mixed_3c",
    "MaxPool3d_4a_3x3",
    "Mixed_4b",
    "Mixed_4c",
    "Mixed_4d",
    "Mixed_4e",
    "Mixed_4f",
    "MaxPool3d_5a_2x2",
    "Mixed_5b",
    "Mixed_5c",
)

# Output channels of an Inception module's six convolutions: b0, b1a, b1b, b2a, b2b, b3b (the release's table).
INCEPTION_WIDTHS = {
    "Mixed_3b": (64, 96, 128, 16, 32, 32),
    "Mixed_3c": (128, 128, 192, 32, 96, 64),
    "Mixed_4b": (192, 96, 208, 16, 48, 64),
    "Mixed_4c": (160, 112, 224, 24, 64, 64),
    "Mixed_4d": (128, 128, 256, 24, 64, 64),
    "Mixed_4e": (112, 144, 288, 32, 64, 64),
    "Mixed_4f": (256, 160, 320, 32, 128, 128),
    "Mixed_5b": (256, 160, 320, 32, 128, 128),
    "Mixed_5c": (384, 192, 384, 48, 128, 128),
}


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's "SAME" padding of one axis: (before, after).

    The output has ceil(size / stride) steps; the total padding is whatever the kernel then needs,
    ``max((out - 1) * stride + kernel - size, 0)``, split with the extra pixel after (TF's convention).
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int], value: float = 0.0) -> torch.Tensor:
    """Pad (b, c, t, h, w) so that a (kernel, stride) window gives TF "SAME" output sizes."""
    pads: list[int] = []
    for size, k, s in reversed(list(zip(x.shape[-3:], kernel, stride))):  # F.pad lists the last axis first
        pads.extend(same_padding(size, k, s))
    if not any(pads):
        return x
    return F.pad(x, pads, value=value)


class BatchNorm3dNoScale(nn.BatchNorm3d):
    """BatchNorm with a learnt shift but no scale (gamma fixed at 1), as Sonnet's BatchNorm in I3D.

    ``(x - mean) / sqrt(var + eps) + bias``; eps 1e-3 as the release. Being an ``nn.BatchNorm3d``, it follows
    ``train()``/``eval()`` and anything that looks for batch norms (freezing) finds it. ``momentum`` 0.01 is
    the PyTorch ports' value (the release's TF moving average decays by 0.999).
    """

    def __init__(self, channels: int, eps: float = 1e-3, momentum: float = 0.01):
        super().__init__(channels, eps=eps, momentum=momentum, affine=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, scale=False"


class Unit3D(nn.Module):
    """conv (no bias) -> BatchNorm without scale -> ReLU, "SAME" padded: the release's ``Unit3D``.

    (b, c_in, t, h, w) -> (b, c_out, ceil(t/st), ceil(h/sh), ceil(w/sw)).
    The classifier uses the variant with a bias and neither norm nor activation.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        norm_and_relu: bool = True,
    ):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)
        self.conv = nn.Conv3d(in_channels, out_channels, self.kernel, self.stride, bias=not norm_and_relu)
        self.bn = BatchNorm3dNoScale(out_channels) if norm_and_relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(pad_same(x, self.kernel, self.stride))
        if self.bn is None:
            return x
        return F.relu(self.bn(x))


class MaxPool3dSame(nn.Module):
    """Max pool padded like TF "SAME": padded cells never win (they hold -inf)."""

    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(pad_same(x, self.kernel, self.stride, value=float("-inf")), self.kernel, self.stride)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel}, stride={self.stride}, padding=SAME"


class InceptionModule(nn.Module):
    """Four parallel branches concatenated on channels: 1x1; 1x1 -> 3x3x3; 1x1 -> 3x3x3; max pool -> 1x1.

    (b, c_in, t, h, w) -> (b, b0 + b1b + b2b + b3b, t, h, w).
    """

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3b = widths
        self.b0 = Unit3D(in_channels, w0)
        self.b1a = Unit3D(in_channels, w1a)
        self.b1b = Unit3D(w1a, w1b, kernel=(3, 3, 3))
        self.b2a = Unit3D(in_channels, w2a)
        self.b2b = Unit3D(w2a, w2b, kernel=(3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(in_channels, w3b)
        self.out_channels = w0 + w1b + w2b + w3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))]
        return torch.cat(branches, dim=1)


class InceptionI3d(nn.Module):
    """Inception-I3D, RGB. ``forward(clip)`` -> class logits (b, k), mirroring ``InceptionI3d`` of the release.

    Args:
        num_classes: classifier outputs (400 for Kinetics-400); None builds no classifier (a backbone).
        temporal_stride: 8 for the original network, 4 for PointTAD's detection backbone (MaxPool3d_5a
            then pools space only).
        dropout: dropout before the classifier (active in training only; the release evaluates with none).
        in_channels: 3 for RGB.
    """

    def __init__(self, num_classes: int | None = 400, temporal_stride: int = 8, dropout: float = 0.5, in_channels: int = 3):
        super().__init__()
        if temporal_stride not in (4, 8):
            raise ValueError(f"temporal_stride must be 8 (the original I3D) or 4 (PointTAD's backbone), got {temporal_stride}")
        self.num_classes = num_classes
        self.temporal_stride = temporal_stride
        pool5_t = 2 if temporal_stride == 8 else 1  # PointTAD: MaxPool3d_5a pools space only
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, kernel=(7, 7, 7), stride=(2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, kernel=(3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = InceptionModule(192, INCEPTION_WIDTHS["Mixed_3b"])
        self.Mixed_3c = InceptionModule(256, INCEPTION_WIDTHS["Mixed_3c"])
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((3, 3, 3), (2, 2, 2))
        self.Mixed_4b = InceptionModule(480, INCEPTION_WIDTHS["Mixed_4b"])
        self.Mixed_4c = InceptionModule(512, INCEPTION_WIDTHS["Mixed_4c"])
        self.Mixed_4d = InceptionModule(512, INCEPTION_WIDTHS["Mixed_4d"])
        self.Mixed_4e = InceptionModule(512, INCEPTION_WIDTHS["Mixed_4e"])
        self.Mixed_4f = InceptionModule(528, INCEPTION_WIDTHS["Mixed_4f"])
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((pool5_t, 2, 2), (pool5_t, 2, 2))
        self.Mixed_5b = InceptionModule(832, INCEPTION_WIDTHS["Mixed_5b"])
        self.Mixed_5c = InceptionModule(832, INCEPTION_WIDTHS["Mixed_5c"])
        self.out_channels = self.Mixed_5c.out_channels
        if num_classes is not None:
            self.dropout = nn.Dropout(dropout)
            self.logits = Unit3D(self.out_channels, num_classes, norm_and_relu=False)

    def endpoints(self, clip: torch.Tensor, names: tuple[str, ...] = ENDPOINTS) -> dict[str, torch.Tensor]:
        """Run the layers in order and return the outputs of the endpoints in ``names`` (b, c, t', h', w').

        Stops after the last endpoint asked for, and keeps only those asked for (memory).
        """
        unknown = [n for n in names if n not in ENDPOINTS]
        if unknown:
            raise ValueError(f"unknown I3D endpoint(s) {unknown}; valid: {', '.join(ENDPOINTS)}")
        if clip.ndim != 5:
            raise ValueError(f"I3D expects a clip (b, c, t, h, w), got shape {tuple(clip.shape)}")
        last = max(ENDPOINTS.index(n) for n in names)
        out, x = {}, clip
        for name in ENDPOINTS[: last + 1]:
            x = getattr(self, name)(x)
            if name in names:
                out[name] = x
        return out

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        """(b, 3, t, h, w) in [-1, 1] -> logits (b, k): the release's "Logits" endpoint.

        Mixed_5c is averaged over (2, 7, 7) windows ("VALID", stride 1), classified by a 1x1x1 conv at every
        remaining step, and the logits are averaged over time. Needs 224x224 frames (7x7 at Mixed_5c) as the
        release; the softmax of the result is its "Predictions".
        """
        if self.num_classes is None:
            raise RuntimeError("this InceptionI3d was built without a classifier (num_classes=None); use endpoints()")
        x = self.endpoints(clip, ("Mixed_5c",))["Mixed_5c"]
        if x.shape[-3] < 2 or x.shape[-2] < 7 or x.shape[-1] < 7:
            raise ValueError(
                f"the classifier pools (2, 7, 7) windows of Mixed_5c, which is only {tuple(x.shape[-3:])} here: "
                f"feed at least {self.temporal_stride + 1} frames of at least 193x193 pixels, 224x224 as the release "
                f"(got t, h, w = {tuple(clip.shape[-3:])})"
            )
        x = F.avg_pool3d(x, kernel_size=(2, 7, 7), stride=1)
        x = self.logits(self.dropout(x))
        return reduce(x, "b k t h w -> b k", "mean")
