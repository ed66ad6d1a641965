"""A small video encoder for CPU lessons: the I3D encoder's interface at about 1/50 of its cost.

Glossary: b batch, c channels, t frames, h height, w width, d hidden size.
``SmallVideoNet`` maps a clip (b, 3, t, h, w) in [-1, 1] to features (b, c, t/4), the same temporal stride
as PointTAD's I3D backbone, so the detector above it cannot tell them apart. It is built for the synthetic
stick-figure micro-gestures (48x48 to 64x64 frames at 10 fps) and learns from scratch within minutes:

* what moved, not what is there: the first layer sees two views of the clip (6 input channels), the
  frame's difference from the window's mean frame, x_t - mean_t(x), and the frame difference
  x_t - x_{t-1}. Both are blind to everything that stays still (background, clothes, the resting body),
  so a new subject looks like the training ones; the first shows where a hand *is* while a gesture holds
  it away from its rest (a micro-gesture is a pose held for a second or two), the second how it moves;
* space shrinks fast, time slowly: a per-frame 5x5 stride-2 stem, then 3x3x3 convolutions whose stride
  halves time twice (t/4) and space three more times, so a 64x64 frame becomes a 4x4 grid;
* where matters: the 4x4 grid is flattened into channels (not averaged away), because "touch the head" and
  "touch the chest" differ mainly in where the hand is;
* BatchNorm: its statistics pool every frame and position of the batch (over 10^4 values a channel even
  for one window), so they are steady even at batch size 1. In trials on the synthetic gestures the
  network trained from scratch noticeably sooner with BatchNorm than with GroupNorm, and sooner again
  with the residual input than with the raw frames (the demo's F1 in the README is the result that
  counts). Evaluation uses BatchNorm's running averages.

At t = 128 and 64x64 frames it costs about 1 GMAC (2 GFLOP) a window, at 48x48 about half of that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def frame_differences(clip: torch.Tensor) -> torch.Tensor:
    """(b, c, t, h, w) -> (b, c, t, h, w) with x_t - x_{t-1} at step t and zeros at t = 0."""
    return torch.cat([torch.zeros_like(clip[:, :, :1]), clip[:, :, 1:] - clip[:, :, :-1]], dim=2)


def frame_residuals(clip: torch.Tensor) -> torch.Tensor:
    """(b, c, t, h, w) -> (b, c, t, h, w): each frame minus the clip's mean frame, x_t - mean_t(x)."""
    return clip - clip.mean(dim=2, keepdim=True)


def _conv_block(c_in: int, c_out: int, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> nn.Sequential:
    padding = tuple(k // 2 for k in kernel)  # with odd kernels: ceil(size / stride) steps out
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, kernel, stride, padding, bias=False),
        nn.BatchNorm3d(c_out),
        nn.ReLU(inplace=True),
    )


class SmallVideoNet(nn.Module):
    """(b, 3, t, h, w) in [-1, 1] -> (b, out_channels, ceil(t/4)); any frame size of at least 32 pixels.

    Layers (channels, steps of a 128-frame 64x64 window):
    residuals + differences (6, 128, 64x64) -> stem 1x5x5 /(1,2,2) (16, 128, 32x32) -> 3x3x3 /2 (48, 64, 16x16)
    -> 3x3x3 /2 (96, 32, 8x8) -> 3x3x3 /(1,2,2) (96, 32, 4x4) -> flatten the 4x4 grid (1536, 32)
    -> temporal conv, kernel 3 (out_channels, 32). 48x48 frames give a 3x3 grid, pooled to 4x4.
    """

    def __init__(self, out_channels: int = 256, widths: tuple[int, int, int] = (16, 48, 96), grid: int = 4):
        super().__init__()
        c1, c2, c3 = widths
        self.grid = grid
        self.stem = _conv_block(6, c1, (1, 5, 5), (1, 2, 2))
        self.down1 = _conv_block(c1, c2, (3, 3, 3), (2, 2, 2))
        self.down2 = _conv_block(c2, c3, (3, 3, 3), (2, 2, 2))
        self.space = _conv_block(c3, c3, (3, 3, 3), (1, 2, 2))
        self.temporal = nn.Sequential(
            nn.Conv1d(c3 * grid * grid, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm1d(out_channels),
            nn.ReLU(inplace=True),
        )
        self.out_channels = out_channels

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        if clip.ndim != 5 or clip.shape[1] != 3:
            raise ValueError(f"expected a clip (b, 3, t, h, w), got shape {tuple(clip.shape)}")
        if min(clip.shape[-2:]) < 8 * self.grid:
            raise ValueError(f"frames must be at least {8 * self.grid}x{8 * self.grid} pixels, got {tuple(clip.shape[-2:])}")
        x = torch.cat([frame_residuals(clip), frame_differences(clip)], dim=1)
        x = self.space(self.down2(self.down1(self.stem(x))))
        x = F.adaptive_avg_pool3d(x, (x.shape[2], self.grid, self.grid))  # identity for 64x64 frames
        x = rearrange(x, "b c t h w -> b (c h w) t")
        return self.temporal(x)
