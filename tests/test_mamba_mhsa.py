"""The Mamba-MHSA block: N_m = 0 is PointTAD's attention, the residual Mamba stream, and the query orders."""

import math

import pytest
import torch
from torch import nn

from mgtutor.model.mamba_mhsa import MambaMHSA, ResidualMambaBlock, centre_order


class PointTADAttention(nn.Module):
    """PointTAD's inter-query attention as its decoder layer writes it: sequence-first, add, norm."""

    def __init__(self, hidden, heads):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(hidden, heads, dropout=0.1)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, query):  # (b, q, d)
        seq = query.transpose(0, 1)
        out = self.norm(seq + self.self_attn(seq, seq, value=seq)[0])
        return out.transpose(0, 1)


def test_no_mamba_blocks_is_pointtads_self_attention():
    block = MambaMHSA(hidden=16, heads=4, dropout=0.1, mamba_blocks=0, order="given").eval()
    reference = PointTADAttention(16, 4).eval()
    assert set(block.state_dict()) == set(reference.state_dict())
    reference.load_state_dict(block.state_dict())
    query = torch.randn(3, 7, 16)
    torch.testing.assert_close(block(query), reference(query))


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="order"):
        MambaMHSA(hidden=8, heads=2, order="sorted")
    with pytest.raises(ValueError, match="mamba_blocks"):
        MambaMHSA(hidden=8, heads=2, mamba_blocks=-1)


def test_centre_order_is_stable():
    centres = torch.tensor([[0.5, 0.2, 0.5, 0.1]])
    assert centre_order(centres).tolist() == [[3, 1, 0, 2]]


# The tests below need mgtutor.ssm.Mamba.


def small_block(order, mamba_blocks=2):
    torch.manual_seed(0)
    return MambaMHSA(hidden=16, heads=4, dropout=0.0, mamba_blocks=mamba_blocks, order=order, d_state=4).eval()


def test_mamba_stream_is_the_public_residual_block():
    block = small_block("given")
    query = torch.randn(2, 9, 16)
    # by hand: mamba_ssm's Block (Add -> LayerNorm -> Mamba) twice, the last add, then attention + add & norm
    residual = query
    hidden = block.blocks[0].mixer(block.blocks[0].norm(residual))
    residual = hidden + residual
    hidden = block.blocks[1].mixer(block.blocks[1].norm(residual))
    stream = hidden + residual
    expected = block.norm(stream + block.self_attn(stream, stream, stream)[0])
    torch.testing.assert_close(block(query), expected)


def test_given_order_depends_on_the_query_order():
    block = small_block("given")
    query = torch.randn(1, 9, 16)
    perm = torch.randperm(9)
    out, out_permuted = block(query), block(query[:, perm])
    assert not torch.allclose(out[:, perm], out_permuted, atol=1e-4)


def test_centre_order_is_permutation_equivariant():
    block = small_block("centre")
    query, centres = torch.randn(2, 9, 16), torch.rand(2, 9)
    perm = torch.randperm(9)
    out = block(query, centres)
    torch.testing.assert_close(block(query[:, perm], centres[:, perm]), out[:, perm])
    # and equals the "given" block (same weights) run on the queries sorted by centre
    given = small_block("given")
    given.load_state_dict(block.state_dict())
    order = centre_order(centres)
    for b in range(2):
        sorted_out = given(query[b : b + 1, order[b]])
        torch.testing.assert_close(out[b, order[b]], sorted_out[0])


def test_centre_order_needs_centres():
    with pytest.raises(ValueError, match="centres"):
        small_block("centre")(torch.randn(1, 5, 16))


def test_bidirectional_averages_a_forward_and_a_reversed_scan():
    block = small_block("bidirectional", mamba_blocks=1)
    layer = block.blocks[0]
    assert isinstance(layer, ResidualMambaBlock) and layer.mixer_reverse is not None
    query = torch.randn(2, 9, 16)
    normed = layer.norm(query)
    mixed = 0.5 * (layer.mixer(normed) + layer.mixer_reverse(normed.flip(1)).flip(1)) + query
    expected = block.norm(mixed + block.self_attn(mixed, mixed, mixed)[0])
    torch.testing.assert_close(block(query), expected)
    # the last query now depends on the first, and the first on the last
    query.requires_grad_(True)
    out = block.scan(query)
    first_on_last = torch.autograd.grad(out[:, 0].sum(), query, retain_graph=True)[0][:, -1]
    assert first_on_last.abs().sum() > 0


def test_mamba_keeps_its_own_initialisation():
    block = small_block("given")
    mixer = block.blocks[0].mixer
    d_inner, d_state = mixer.A_log.shape
    expected = torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).expand(d_inner, -1)
    torch.testing.assert_close(mixer.A_log.detach(), expected)
    torch.testing.assert_close(mixer.D.detach(), torch.ones(d_inner))
    assert mixer.A_log._no_weight_decay and mixer.D._no_weight_decay
    bound = mixer.dt_proj.weight.shape[1] ** -0.5
    assert mixer.dt_proj.weight.abs().max() <= bound
    dt = torch.nn.functional.softplus(mixer.dt_proj.bias.detach())
    assert dt.min() >= 1e-4 - 1e-7 and dt.max() <= 0.1 + 1e-6
    assert math.isclose(dt.log().mean().item(), (math.log(1e-3) + math.log(0.1)) / 2, abs_tol=0.5)
