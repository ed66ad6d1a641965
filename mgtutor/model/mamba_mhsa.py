"""The Mamba-MHSA block (paper sec. 3.5): the decoder's exchange between queries.

PointTAD lets its q query vectors talk through one multi-head self-attention with add & norm. The paper
puts N_m residual Mamba blocks in front of that attention::

    x, r = v, None
    for each of the N_m blocks:         (mamba_ssm's ``Block``: Add -> LayerNorm -> Mamba)
        r = x + r   (r = x for the first block)
        x = Mamba(LayerNorm(r))
    u = x + r                           (the last Add; no final norm: the attention's norm follows)
    out = LayerNorm(u + Dropout(MHSA(u, u, u)))

With N_m = 0, ``u = v`` and the block is PointTAD's self-attention exactly, with the same parameters
(``self_attn``, ``norm``).

A Mamba scan is causal: query i sees queries 0..i-1 and never those after it. Queries are a set with no
natural order, so the order is a modelling choice (``order``):

- ``"given"``: index order 0..q-1, as the paper (the learnt query embeddings then decide who reads whom);
- ``"centre"``: sorted by the centre of each query's current pseudo-segment (ties keep index order, so at
  the all-middle start it equals "given"); outputs go back to the original query order. The block is then
  equivariant to permuting the queries (attention is, and the scan order follows the content);
- ``"bidirectional"``: each block runs a forward scan and a reversed scan with separate Mamba weights
  (``mixer`` and ``mixer_reverse``) on the same normalised input and averages them, as Vision Mamba's
  bidirectional block divides its two directions by 2; every query then sees every other.

Shapes: b batch, q queries, d hidden size.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn

from mgtutor.ssm import Mamba

QueryOrder = Literal["given", "centre", "bidirectional"]  # the module docstring's orders; also model.query_order
ORDERS: tuple[str, ...] = get_args(QueryOrder)


class ResidualMambaBlock(nn.Module):
    """Add -> LayerNorm -> Mamba, the pre-norm residual block of mamba_ssm (``mamba_ssm.modules.block.Block``).

    ``forward(hidden, residual)`` returns ``(Mamba(LayerNorm(hidden + residual)), hidden + residual)``;
    the caller adds the last pair. With ``bidirectional=True`` the mixer is the mean of a forward scan
    (``mixer``) and a reversed scan (``mixer_reverse``), each with its own weights.
    """

    def __init__(
        self,
        hidden: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        backend: str = "torch",
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.mixer = Mamba(hidden, d_state=d_state, d_conv=d_conv, expand=expand, backend=backend)
        self.mixer_reverse = (
            Mamba(hidden, d_state=d_state, d_conv=d_conv, expand=expand, backend=backend) if bidirectional else None
        )

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, q, d) hidden, (b, q, d) or None residual -> (b, q, d) new hidden, (b, q, d) new residual."""
        residual = hidden if residual is None else hidden + residual
        normed = self.norm(residual)
        out = self.mixer(normed)
        if self.mixer_reverse is not None:
            out = 0.5 * (out + self.mixer_reverse(normed.flip(1)).flip(1))
        return out, residual


def centre_order(centres: torch.Tensor) -> torch.Tensor:
    """(b, q) segment centres -> (b, q) query indices sorted by centre (stable: ties keep index order)."""
    return torch.argsort(centres, dim=1, stable=True)


class MambaMHSA(nn.Module):
    """N_m residual Mamba blocks, then multi-head self-attention with add & norm, over the query vectors.

    Args:
        hidden: d, the query vectors' width.
        heads: attention heads (8 in PointTAD).
        dropout: attention-weight dropout and the dropout before the residual add (0.1 in PointTAD).
        mamba_blocks: N_m (2 in the paper; 0 gives PointTAD's self-attention).
        order: "given", "centre" or "bidirectional" (module docstring).
        d_state, d_conv, expand, backend: passed to :class:`mgtutor.ssm.Mamba`.

    Initialisation: the attention projections are Xavier-uniform (PointTAD's decoder-wide pass; the
    input projection already is, the output projection is changed from PyTorch's default). The Mamba
    blocks keep their own initialisation (A_log = log(1..n), D = 1, dt_proj's inverse-softplus bias and
    scaled uniform weight); a blanket Xavier pass would destroy it.
    """

    def __init__(
        self,
        hidden: int,
        heads: int = 8,
        dropout: float = 0.1,
        mamba_blocks: int = 0,
        order: QueryOrder = "given",
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        backend: str = "torch",
    ) -> None:
        super().__init__()
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        if mamba_blocks < 0:
            raise ValueError(f"mamba_blocks must be >= 0, got {mamba_blocks}")
        self.order = order
        self.blocks = nn.ModuleList(
            ResidualMambaBlock(hidden, d_state, d_conv, expand, backend, bidirectional=order == "bidirectional")
            for _ in range(mamba_blocks)
        )
        self.self_attn = nn.MultiheadAttention(hidden, heads, dropout=dropout, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(hidden)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.xavier_uniform_(self.self_attn.in_proj_weight)
        nn.init.xavier_uniform_(self.self_attn.out_proj.weight)

    def scan(self, query: torch.Tensor) -> torch.Tensor:
        """The Mamba stream: (b, q, d) in the scan's order -> (b, q, d), including the last residual add."""
        hidden, residual = query, None
        for block in self.blocks:
            hidden, residual = block(hidden, residual)
        return hidden if residual is None else hidden + residual

    def forward(self, query: torch.Tensor, centres: torch.Tensor | None = None) -> torch.Tensor:
        """Let the queries exchange information.

        Args:
            query: (b, q, d) query vectors.
            centres: (b, q) centres of the queries' current pseudo-segments; needed for order "centre".

        Returns:
            (b, q, d) updated query vectors, in the input's query order.
        """
        if self.blocks and self.order == "centre":
            if centres is None or centres.shape != query.shape[:2]:
                got = None if centres is None else tuple(centres.shape)
                raise ValueError(f"order 'centre' needs centres of shape {tuple(query.shape[:2])}, got {got}")
            index = centre_order(centres).unsqueeze(-1).expand_as(query)
            scanned = self.scan(query.gather(1, index))
            mixed = torch.empty_like(scanned).scatter(1, index, scanned)
        else:
            mixed = self.scan(query)
        attended, _ = self.self_attn(mixed, mixed, mixed, need_weights=False)
        return self.norm(mixed + self.dropout(attended))
