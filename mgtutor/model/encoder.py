"""The detector's encoder: a clip (b, 3, T, H, W) in [-1, 1] -> features (b, d, T/4), whichever network.

Glossary: b batch, T frames, t = T/4 feature steps, c backbone channels, d hidden size (512 in the paper).

Every encoder is a :class:`VideoEncoder`: a ``backbone`` (the part that may be pretrained and frozen) whose
output ``features(x)`` (b, c, t) is mapped to the hidden size by ``project`` (always trained, at the full
learning rate). ``stride = 4`` frames per feature step. Three kinds, chosen by ``ModelConfig.encoder``:

* ``"i3d"``  :class:`I3DEncoder`, PointTAD's backbone: Inception-I3D with temporal stride 4; Mixed_4f
  (832 ch) and Mixed_5c (1024 ch) averaged over space, each projected by a 1x1 convolution to d, summed.
* ``"small"`` :class:`SmallEncoder`, the CPU encoder of :mod:`mgtutor.model.small_encoder`, projected to d.
* ``"features"`` :class:`FeatureEncoder`, for precomputed features (b, feature_dim, t): a 1x1 projection.

Optimiser and freezing (PointTAD trains the backbone end to end with a 10x smaller learning rate):
``encoder.backbone_parameters()`` are the parameters to put in the group with ``lr * encoder_lr_scale``;
``encoder.head_parameters()`` (the projection) train at ``lr`` with the rest of the detector. ``freeze()``
(``ModelConfig.freeze_encoder``) stops gradients into the backbone and keeps it in eval mode, so its
BatchNorm statistics and dropout stay fixed while the detector trains; its frozen parameters then have
``requires_grad`` False, so an optimiser that keeps only trainable parameters skips them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from einops import reduce
from torch import nn

from mgtutor.config import ENCODER_STRIDE
from mgtutor.model.i3d import InceptionI3d
from mgtutor.model.small_encoder import SmallVideoNet

STRIDE = ENCODER_STRIDE  # frames a feature step


class VideoEncoder(nn.Module):
    """Base of the encoders: ``forward(x) = project(features(x))``, with freezing and parameter groups."""

    stride = STRIDE
    backbone: nn.Module
    feature_channels: int

    def __init__(self) -> None:
        super().__init__()
        self.frozen = False

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features before the projection: (b, feature_channels, t)."""
        raise NotImplementedError

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """(b, feature_channels, t) -> (b, d, t)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            features = self.features(x)
        return self.project(features)

    def freeze(self, frozen: bool = True) -> VideoEncoder:
        """Stop (or restart) training the backbone: no gradients, BatchNorm statistics and dropout fixed."""
        self.frozen = frozen
        self.backbone.requires_grad_(not frozen)
        return self.train(self.training)

    def train(self, mode: bool = True) -> VideoEncoder:
        super().train(mode)
        if self.frozen:
            self.backbone.eval()
        return self

    def backbone_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters for the group with ``lr * encoder_lr_scale`` (none are trainable when frozen)."""
        return self.backbone.parameters()

    def head_parameters(self) -> Iterator[nn.Parameter]:
        """The projection's parameters, trained at the detector's learning rate."""
        backbone = {id(p) for p in self.backbone.parameters()}
        return (p for p in self.parameters() if id(p) not in backbone)


def _check_clip(clip: torch.Tensor) -> None:
    if clip.ndim != 5 or clip.shape[1] != 3:
        raise ValueError(f"expected a clip (b, 3, T, H, W), got shape {tuple(clip.shape)}")
    if clip.shape[2] % STRIDE:
        raise ValueError(f"the clip's length T = {clip.shape[2]} must be a multiple of the encoder's stride {STRIDE}")


class I3DEncoder(VideoEncoder):
    """PointTAD's I3D backbone: (b, 3, T, H, W) -> (b, d, T/4).

    ``features``: Mixed_4f and Mixed_5c of :class:`InceptionI3d` (temporal stride 4), each averaged over
    space, concatenated: (b, 832 + 1024, T/4). ``project``: ``proj_4f(f_4f) + proj_5c(f_5c)``, two 1x1
    convolutions with bias (PointTAD's ``input_proj_4f`` and ``input_proj_5c``, summed). Averaging over the
    whole frame equals PointTAD's fixed (1, 12, 12) and (1, 6, 6) pools at its 192x192 crops, and works at
    any frame size.
    """

    def __init__(self, hidden: int = 512):
        super().__init__()
        self.backbone = InceptionI3d(num_classes=None, temporal_stride=4)
        self.channels_4f = self.backbone.Mixed_4f.out_channels
        self.channels_5c = self.backbone.Mixed_5c.out_channels
        self.feature_channels = self.channels_4f + self.channels_5c
        self.proj_4f = nn.Conv1d(self.channels_4f, hidden, kernel_size=1)
        self.proj_5c = nn.Conv1d(self.channels_5c, hidden, kernel_size=1)

    def features(self, clip: torch.Tensor) -> torch.Tensor:
        _check_clip(clip)
        maps = self.backbone.endpoints(clip, ("Mixed_4f", "Mixed_5c"))
        pooled = [reduce(maps[name], "b c t h w -> b c t", "mean") for name in ("Mixed_4f", "Mixed_5c")]
        return torch.cat(pooled, dim=1)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        f_4f, f_5c = features.split([self.channels_4f, self.channels_5c], dim=1)
        return self.proj_4f(f_4f) + self.proj_5c(f_5c)


class SmallEncoder(VideoEncoder):
    """:class:`SmallVideoNet` then a 1x1 projection: (b, 3, T, H, W) -> (b, d, T/4). Learns from scratch, so
    give it ``encoder_lr_scale = 1``."""

    def __init__(self, hidden: int = 512, channels: int = 256):
        super().__init__()
        self.backbone = SmallVideoNet(out_channels=channels)
        self.feature_channels = channels
        self.proj = nn.Conv1d(channels, hidden, kernel_size=1)

    def features(self, clip: torch.Tensor) -> torch.Tensor:
        _check_clip(clip)
        return self.backbone(clip)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return self.proj(features)


class FeatureEncoder(VideoEncoder):
    """Precomputed features (b, feature_dim, t) -> (b, d, t) by a 1x1 convolution; no backbone.

    Features from :func:`extract_features` of a frozen :class:`I3DEncoder` (feature_dim 1856) make this
    exactly a frozen I3D encoder: a 1x1 convolution of the concatenation is the sum of the two projections.
    """

    def __init__(self, feature_dim: int, hidden: int = 512):
        super().__init__()
        self.backbone = nn.Identity()
        self.feature_channels = feature_dim
        self.proj = nn.Conv1d(feature_dim, hidden, kernel_size=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1] != self.feature_channels:
            raise ValueError(
                f"expected precomputed features (b, {self.feature_channels}, t) (model.feature_dim = {self.feature_channels}), "
                f"got shape {tuple(x.shape)}"
            )
        return x

    def project(self, features: torch.Tensor) -> torch.Tensor:
        return self.proj(features)


def build_encoder(cfg) -> VideoEncoder:
    """The encoder named by ``cfg.encoder`` (a :class:`mgtutor.config.ModelConfig`), with I3D weights loaded
    from ``cfg.encoder_weights`` when given and the backbone frozen when ``cfg.freeze_encoder``."""
    if cfg.encoder == "i3d":
        encoder: VideoEncoder = I3DEncoder(cfg.hidden)
        if cfg.encoder_weights:
            from mgtutor.model.i3d_weights import load_i3d_weights

            path = Path(cfg.encoder_weights)
            if not path.is_file():
                raise FileNotFoundError(
                    f"model.encoder_weights = {path} does not exist; create it with `mgtutor convert-i3d --out {path}`"
                )
            load_i3d_weights(encoder.backbone, path)
    elif cfg.encoder == "small":
        encoder = SmallEncoder(cfg.hidden)
    elif cfg.encoder == "features":
        encoder = FeatureEncoder(cfg.feature_dim, cfg.hidden)
    else:
        raise ValueError(f"model.encoder must be 'i3d', 'small' or 'features', got {cfg.encoder!r}")
    if cfg.freeze_encoder:
        encoder.freeze()
    return encoder


@torch.no_grad()
def extract_features(encoder: VideoEncoder, clip: torch.Tensor) -> torch.Tensor:
    """Backbone features of a clip for a features cache: (b, 3, T, H, W) -> (b, feature_channels, T/4).

    Runs in eval mode (BatchNorm running statistics, no dropout) and restores the encoder's mode after.
    """
    was_training = encoder.training
    encoder.eval()
    try:
        return encoder.features(clip)
    finally:
        encoder.train(was_training)
