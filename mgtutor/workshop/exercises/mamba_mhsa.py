"""Notebook 04's exercises: the residual Mamba stream of the Mamba-MHSA block and the scan in
segment-centre order, graded against `mgtutor.model.mamba_mhsa.MambaMHSA`.

Shapes: b batch, q queries, d hidden size.
"""

from __future__ import annotations

import torch

from mgtutor.model.mamba_mhsa import MambaMHSA
from mgtutor.workshop.check import Case, Exercise, Mistake, register

HIDDEN, HEADS, D_STATE = 12, 2, 4


def _block(mamba_blocks: int, order: str = "given", dtype=torch.float64) -> MambaMHSA:
    return MambaMHSA(HIDDEN, heads=HEADS, mamba_blocks=mamba_blocks, order=order, d_state=D_STATE).to(dtype).eval()


# -- the residual Mamba stream ----------------------------------------------------------------------


def _stream(v, block):
    return block.scan(v)


def _stream_by_hand(accumulate=True, norm=True, last_add=True):
    """The stream with one of its three parts left out: the usual slips."""

    def stream(v, block):
        residual, x = None, v
        for layer in block.blocks:
            residual = x if residual is None or not accumulate else x + residual
            x = layer.mixer(layer.norm(residual) if norm else residual)
        return x + residual if last_add else x

    return stream


def _stream_cases() -> list[Case]:
    return [
        Case("N_m = 2, b = 2, q = 7", dict(v=torch.randn(2, 7, HIDDEN, dtype=torch.float64), block=_block(2))),
        Case("N_m = 1", dict(v=torch.randn(1, 5, HIDDEN, dtype=torch.float64), block=_block(1))),
        Case("N_m = 3, q = 1", dict(v=torch.randn(2, 1, HIDDEN, dtype=torch.float64), block=_block(3))),
        Case("N_m = 3, float32", dict(v=torch.randn(1, 9, HIDDEN), block=_block(3, dtype=torch.float32))),
    ]


STREAM = register(Exercise(
    name="mamba_stream",
    minutes=6,
    notebook="04",
    reference=_stream,
    reference_name="MambaMHSA.scan",
    outputs=("u",),
    cases=_stream_cases,
    mistakes=(
        Mistake(_stream_by_hand(last_add=False),
                "your stream ends on the last Mamba block's output: add the residual once more, u = x_{N_m} + "
                "r_{N_m} (mamba_ssm leaves that Add to the next block; here the attention comes next)."),
        Mistake(_stream_by_hand(accumulate=False),
                "your residual forgets the earlier blocks: it is a running sum, r_{k+1} = x_k + r_k, not the "
                "last block's output alone (with N_m = 1 the two agree)."),
        Mistake(_stream_by_hand(norm=False),
                "you fed each Mamba block the raw residual: the block is Add -> LayerNorm -> Mamba, "
                "x = layer.mixer(layer.norm(r))."),
    ),
))

# -- the scan in segment-centre order ---------------------------------------------------------------


def _centre(v, centres, block):
    return block(v, centres)


def _attend(u, block):
    return block.norm(u + block.self_attn(u, u, u)[0])


def _centre_by_hand(index_of, put_back=True):
    """Sort by ``index_of(centres) -> (b, q)``, scan, put back (or not), attend."""

    def centre(v, centres, block):
        index = index_of(centres).unsqueeze(-1).expand_as(v)
        scanned = block.scan(v.gather(1, index))
        u = torch.empty_like(v).scatter(1, index, scanned) if put_back else scanned
        return _attend(u, block)

    return centre


def _centre_cases() -> list[Case]:
    block = _block(2, order="centre")
    v = torch.randn(2, 7, HIDDEN, dtype=torch.float64)
    return [
        Case("b = 1, q = 7, distinct centres", dict(v=v[:1], centres=torch.rand(1, 7, dtype=torch.float64), block=block)),
        Case("b = 2, each window its own order", dict(v=v, centres=torch.rand(2, 7, dtype=torch.float64), block=block)),
        Case("every centre 0.5 (the start of training)", dict(v=v, centres=torch.full((2, 7), 0.5, dtype=torch.float64), block=block)),
        Case("ties among some centres", dict(v=v[:1], centres=torch.tensor([[0.3, 0.1, 0.3, 0.9, 0.1, 0.3, 0.2]], dtype=torch.float64), block=block)),
        Case("q = 1", dict(v=v[:, :1], centres=torch.rand(2, 1, dtype=torch.float64), block=block)),
    ]


def _stable(centres):
    return torch.argsort(centres, dim=1, stable=True)


CENTRE = register(Exercise(
    name="centre_ordered",
    minutes=7,
    notebook="04",
    reference=_centre,
    reference_name="MambaMHSA(order='centre')",
    outputs=("out",),
    cases=_centre_cases,
    mistakes=(
        Mistake(_centre_by_hand(_stable, put_back=False),
                "your outputs stay in scan order: put each one back where its query came from, "
                "torch.empty_like(v).scatter(1, index, scanned) with the same index as the gather."),
        Mistake(_centre_by_hand(lambda c: torch.argsort(c, dim=1, descending=True, stable=True)),
                "you scan from the latest centre to the earliest; sort ascending, like a video's time."),
        Mistake(_centre_by_hand(lambda c: _stable(c[:1]).expand_as(c)),
                "you sorted every window by the first window's centres: argsort along dim 1 gives each window "
                "(each row of centres) its own order, and gather follows it row by row."),
        Mistake(lambda v, centres, block: _attend(block.scan(v), block),
                "you scanned in index order (the 'given' order): sort the queries by their centres first."),
    ),
))
