"""The action decoder: L layers that refine the query vectors and the query points (paper sec. 3.3-3.6).

One layer, in PointTAD's order (``PointtadDecoderLayer.forward``)::

    point features  = DeformableSampling(v, F, points)          eqs. 9-11, with the incoming v
    v = MambaMHSA(v)                                            sec. 3.5 (N_m = 0: PointTAD's attention + add & norm)
    v = LayerNorm(v + Dropout(DynamicMixing(v, point features)))    eqs. 12-15
    v = LayerNorm(v + Dropout(FFN(v)))                          Linear(d -> ffn), ReLU, Dropout, Linear(ffn -> d)
    logits = class head(v)                                      [Linear (no bias), LN, ReLU] + Linear(d -> k + 1)
    points = refine_points(points, PointOffsetHead(v))          eq. 1

The same code is PointTAD (``mamba_blocks = 0``) and the paper's model (``mamba_blocks = 2``).

Initialisation, stated once for the whole decoder. PointTAD runs ``xavier_uniform_`` over every parameter
with two or more axes of its decoder, after the sub-modules set their own. mgtutor keeps that Xavier
init for the attention projections, the mixing generators and fusion, the FFN and the hidden layers of
both heads, and departs from it on purpose in three places:

- the deformable offset and weight heads keep their zero weights (PointTAD's ``PointDeformation`` sets
  them to zero and its own Xavier pass then overwrites them): sub-points start 1..s steps after each
  point with equal weights;
- the last layer of the point offset head (``point_head.delta``) starts at zero, so the points stay
  exactly where they are until learning moves them;
- the Mamba blocks keep Mamba's own initialisation (A_log = log(1..n), D = 1, dt_proj).

Each module applies its part in its own ``reset_parameters``; nothing re-initialises afterwards.

Shapes: b batch, t feature steps, d hidden size, q queries, p points, k classes, L layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from mgtutor.config import ModelConfig
from mgtutor.model.interactive import DeformableSampling, DynamicMixing
from mgtutor.model.mamba_mhsa import MambaMHSA
from mgtutor.model.query_points import PointOffsetHead, points_to_segments, refine_points


class ClassHead(nn.Module):
    """PointTAD's ``cls_module`` + ``class_logits``: [Linear (no bias), LN, ReLU], then Linear(d -> k + 1)."""

    def __init__(self, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(hidden, hidden, bias=False), nn.LayerNorm(hidden), nn.ReLU())
        self.logits = nn.Linear(hidden, num_classes + 1)
        nn.init.xavier_uniform_(self.hidden[0].weight)
        nn.init.xavier_uniform_(self.logits.weight)

    def forward(self, query: torch.Tensor) -> torch.Tensor:
        """(b, q, d) -> (b, q, k + 1); the last class is "no object"."""
        return self.logits(self.hidden(query))


@dataclass
class LayerOutput:
    """One decoder layer's results: logits (b, q, k + 1), points (b, q, p), query vectors (b, q, d)."""

    logits: torch.Tensor
    points: torch.Tensor
    query: torch.Tensor


class DecoderLayer(nn.Module):
    """One decoder layer (module docstring), sized by a :class:`~mgtutor.config.ModelConfig`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.hidden
        self.sampling = DeformableSampling(d, cfg.points, cfg.subpoints, cfg.boundary_points)
        self.query_mixer = MambaMHSA(
            d,
            heads=cfg.heads,
            dropout=cfg.dropout,
            mamba_blocks=cfg.mamba_blocks,
            order=cfg.query_order,
            d_state=cfg.d_state,
            d_conv=cfg.d_conv,
            expand=cfg.expand,
            backend=cfg.mamba_backend,
        )
        self.mixing = DynamicMixing(d, cfg.points, cfg.mix_dim)
        self.mixing_dropout = nn.Dropout(cfg.dropout)
        self.mixing_norm = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, cfg.ffn), nn.ReLU(), nn.Dropout(cfg.dropout), nn.Linear(cfg.ffn, d))
        self.ffn_dropout = nn.Dropout(cfg.dropout)
        self.ffn_norm = nn.LayerNorm(d)
        self.class_head = ClassHead(d, cfg.num_classes)
        self.point_head = PointOffsetHead(d, cfg.points)
        for linear in (self.ffn[0], self.ffn[3]):
            nn.init.xavier_uniform_(linear.weight)

    def forward(self, features: torch.Tensor, points: torch.Tensor, query: torch.Tensor) -> LayerOutput:
        """Refine the queries once.

        Args:
            features: (b, t, d) the window's features.
            points: (b, q, p) incoming query points.
            query: (b, q, d) incoming query vectors.

        Returns:
            :class:`LayerOutput` with logits (b, q, k + 1), refined points (b, q, p), query vectors (b, q, d).
        """
        point_features = self.sampling(query, features, points)
        query = self.query_mixer(query, centres=points_to_segments(points).mean(dim=-1))
        query = self.mixing_norm(query + self.mixing_dropout(self.mixing(query, point_features)))
        query = self.ffn_norm(query + self.ffn_dropout(self.ffn(query)))
        return LayerOutput(self.class_head(query), refine_points(points, self.point_head(query)), query)


class Decoder(nn.Module):
    """L decoder layers (``cfg.layers``), each with its own weights; every layer's results are kept."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(cfg) for _ in range(cfg.layers))

    def forward(
        self, features: torch.Tensor, points: torch.Tensor, query: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run every layer.

        Args:
            features: (b, t, d) the window's features.
            points: (b, q, p) initial query points.
            query: (b, q, d) initial query vectors.

        Returns:
            logits (L, b, q, k + 1), segments (L, b, q, 2) as (start, end) from each layer's refined points,
            points (L + 1, b, q, p): the initial points, then after each layer.
        """
        all_logits, all_points = [], [points]
        for layer in self.layers:
            out = layer(features, points, query)
            points, query = out.points, out.query
            all_logits.append(out.logits)
            all_points.append(points)
        logits = torch.stack(all_logits)
        all_points = torch.stack(all_points)
        return logits, points_to_segments(all_points[1:]), all_points
