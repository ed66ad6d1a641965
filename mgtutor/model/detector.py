"""The detector: encoder, dense head, learnable queries and the decoder (paper Fig. 1; PointTAD's ``PointTAD``).

::

    clip (b, 3, T, H, W)  or  features (b, feature_dim, t)
      -> encoder                       (b, d, t), t = T // 4
      -> dense head                    (b, t, k)            per-step class logits (PointTAD's ``linear_pred``)
      -> decoder(features, initial points (b, q, p), initial query vectors (b, q, d))
      -> logits (L, b, q, k + 1), segments (L, b, q, 2), points (L + 1, b, q, p)

``model.mamba_blocks = 0`` gives PointTAD; the paper's model uses 2. The initial query vectors are a
learnable (q, d) table drawn from N(0, 1) (PointTAD's ``init_proposal_features`` embedding); the initial
points are :class:`~mgtutor.model.query_points.QueryPoints`, all at the window's middle (PointTAD, the
paper) or spread over it, one segment a query, as ``model.initial_points`` says. The decoder's initialisation is described
in :mod:`mgtutor.model.decoder`.

Shapes: b batch, T frames, t feature steps, d hidden size, q queries, p points, k classes, L layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from mgtutor.config import ModelConfig
from mgtutor.model.decoder import Decoder
from mgtutor.model.encoder import VideoEncoder, build_encoder
from mgtutor.model.query_points import QueryPoints

DENSE_DROPOUT = 0.5  # PointTAD's dense head uses nn.Dropout() with its default p


@dataclass
class DetectorOutput:
    """What the detector predicts for a batch of windows.

    Attributes:
        logits: (L, b, q, k + 1) class logits of every decoder layer (the last is the final prediction);
            index k is "no object".
        segments: (L, b, q, 2) (start, end) normalised to the window, from each layer's points.
        points: (L + 1, b, q, p) query points: the initial ones, then after each layer.
        dense: (b, t, k) per-feature-step class logits, or None when ``model.dense_head`` is off.
    """

    logits: torch.Tensor
    segments: torch.Tensor
    points: torch.Tensor
    dense: torch.Tensor | None


def dense_head(hidden: int, num_classes: int) -> nn.Sequential:
    """PointTAD's ``linear_pred`` on the encoder features: Conv1d(d -> d/2, kernel 3), Dropout(0.5),
    Conv1d(d/2 -> k, kernel 1); (b, d, t) -> (b, k, t). There is no activation between the two
    convolutions in PointTAD's code; mgtutor keeps it that way."""
    return nn.Sequential(
        nn.Conv1d(hidden, hidden // 2, kernel_size=3, padding=1),
        nn.Dropout(DENSE_DROPOUT),
        nn.Conv1d(hidden // 2, num_classes, kernel_size=1),
    )


class Detector(nn.Module):
    """The whole model, sized by a :class:`~mgtutor.config.ModelConfig`.

    Args:
        cfg: the model configuration.
        encoder: a :class:`~mgtutor.model.encoder.VideoEncoder` mapping the input to (b, cfg.hidden, t); by
            default :func:`~mgtutor.model.encoder.build_encoder` builds the one ``cfg.encoder`` names (and
            freezes its backbone when ``cfg.freeze_encoder``).
    """

    def __init__(self, cfg: ModelConfig, encoder: VideoEncoder | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = build_encoder(cfg) if encoder is None else encoder
        self.dense_head = dense_head(cfg.hidden, cfg.num_classes) if cfg.dense_head else None
        self.query_vectors = nn.Parameter(torch.randn(cfg.queries, cfg.hidden))
        self.query_points = QueryPoints(cfg.queries, cfg.points, cfg.initial_points)
        self.decoder = Decoder(cfg)

    def forward(self, x: torch.Tensor) -> DetectorOutput:
        """Detect in a batch of windows.

        Args:
            x: clips (b, 3, T, H, W) in [-1, 1], or features (b, feature_dim, t) when
                ``model.encoder == "features"``.

        Returns:
            :class:`DetectorOutput`.
        """
        features = self.encoder(x)
        if features.dim() != 3 or features.shape[1] != self.cfg.hidden:
            raise ValueError(f"the encoder must return (b, {self.cfg.hidden}, t), got {tuple(features.shape)}")
        dense = None
        if self.dense_head is not None:
            dense = rearrange(self.dense_head(features), "b k t -> b t k")
        batch = features.shape[0]
        logits, segments, points = self.decoder(
            rearrange(features, "b d t -> b t d"),
            self.query_points(batch),
            self.query_vectors.unsqueeze(0).expand(batch, -1, -1),
        )
        return DetectorOutput(logits=logits, segments=segments, points=points, dense=dense)

    def param_groups(self, lr: float, encoder_lr_scale: float | None = None) -> list[dict]:
        """Parameter groups for ``torch.optim.AdamW``.

        - ``"encoder"``: the encoder's backbone at ``lr * encoder_lr_scale`` (PointTAD trains its backbone
          10x slower; ``None`` takes ``model.encoder_lr_scale``);
        - ``"decoder"``: everything else at ``lr``, the encoder's projection included (PointTAD's
          ``input_proj`` convolutions are not in its backbone group), with the optimiser's weight decay
          (PointTAD decays all its parameters);
        - ``"no_decay"``: parameters Mamba marks ``_no_weight_decay`` (A_log, D) at ``lr`` with weight
          decay 0, as the public Mamba asks.

        Frozen parameters are left out; empty groups are dropped. Each group has a ``"name"``.
        """
        scale = self.cfg.encoder_lr_scale if encoder_lr_scale is None else encoder_lr_scale
        encoder_ids = {id(p) for p in self.encoder.backbone_parameters()}
        groups = {
            "encoder": {"name": "encoder", "params": [], "lr": lr * scale},
            "decoder": {"name": "decoder", "params": [], "lr": lr},
            "no_decay": {"name": "no_decay", "params": [], "lr": lr, "weight_decay": 0.0},
        }
        for param in self.parameters():
            if not param.requires_grad:
                continue
            if id(param) in encoder_ids:
                key = "encoder"
            elif getattr(param, "_no_weight_decay", False):
                key = "no_decay"
            else:
                key = "decoder"
            groups[key]["params"].append(param)
        return [group for group in groups.values() if group["params"]]


DEFAULT_EXPAND = (
    "",
    "decoder",
    "decoder.layers",
    "decoder.layers.0",
    "decoder.layers.0.query_mixer",
    "decoder.layers.0.query_mixer.blocks",
    "decoder.layers.0.mixing",
)


def parameter_table(detector: nn.Module, expand: tuple[str, ...] = DEFAULT_EXPAND) -> dict[str, int]:
    """Parameter counts by module, for the README's table.

    Returns an ordered ``{module path: count}``: ``"total"`` first, then, depth first, every module with
    parameters whose parent is listed in ``expand`` (by default the detector's parts, each decoder layer,
    and the first layer's pieces down to the mixing generators). Direct parameters (``query_vectors``)
    appear under their own name.
    """
    rows: dict[str, int] = {}

    def count(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    def visit(module: nn.Module, path: str) -> None:
        rows[path or "total"] = count(module)
        if path not in expand:
            return
        prefix = f"{path}." if path else ""
        for name, param in module.named_parameters(recurse=False):
            rows[prefix + name] = param.numel()
        for name, child in module.named_children():
            if count(child):
                visit(child, prefix + name)

    visit(detector, "")
    return rows
