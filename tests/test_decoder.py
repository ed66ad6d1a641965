"""Decoder layers: PointTAD's order, the stated initialisation, and points that learn to move."""

import pytest
import torch

from mgtutor.config import ModelConfig
from mgtutor.model.decoder import Decoder, DecoderLayer
from mgtutor.model.query_points import QueryPoints, points_to_segments
from mgtutor.model.segments import segment_iou, to_centre_length


def tiny(**overrides):
    values = dict(
        encoder="features", hidden=32, queries=6, points=9, layers=3, heads=4, ffn=64, mix_dim=8,
        num_classes=5, mamba_blocks=0, dropout=0.0,
    )
    values.update(overrides)
    return ModelConfig(**values)


def test_decoder_shapes():
    cfg = tiny()
    decoder = Decoder(cfg)
    features, query = torch.randn(2, 16, 32), torch.randn(2, 6, 32)
    logits, segments, points = decoder(features, torch.rand(2, 6, 9), query)
    assert logits.shape == (3, 2, 6, 6)
    assert segments.shape == (3, 2, 6, 2)
    assert points.shape == (4, 2, 6, 9)
    torch.testing.assert_close(segments, points_to_segments(points[1:]))


def test_layer_follows_pointtads_order():
    cfg = tiny()
    layer = DecoderLayer(cfg).eval()
    features, points, query = torch.randn(1, 16, 32), torch.rand(1, 6, 9), torch.randn(1, 6, 32)
    out = layer(features, points, query)
    # by hand, in PointTAD's order: sampling with the incoming query vectors, attention + add & norm,
    # mixing + add & norm, FFN + add & norm, heads
    point_features = layer.sampling(query, features, points)
    mixer = layer.query_mixer
    attended = mixer.norm(query + mixer.self_attn(query, query, query)[0])
    mixed = layer.mixing_norm(attended + layer.mixing(attended, point_features))
    final = layer.ffn_norm(mixed + layer.ffn(mixed))
    torch.testing.assert_close(out.query, final)
    torch.testing.assert_close(out.logits, layer.class_head(final))
    start, end = points_to_segments(points).unbind(-1)
    torch.testing.assert_close(out.points, points + layer.point_head(final) * 0.5 * (end - start).unsqueeze(-1))


def xavier_bound(weight):
    fan_out, fan_in = weight.shape
    return (6 / (fan_in + fan_out)) ** 0.5


def test_initialisation_is_the_stated_one():
    layer = DecoderLayer(tiny())
    for heads in layer.sampling.groups.values():
        assert torch.all(heads["offsets"].weight == 0) and torch.all(heads["weights"].weight == 0)
        torch.testing.assert_close(heads["offsets"].bias, torch.arange(1.0, 5.0))
        assert torch.all(heads["weights"].bias == 0)
    assert torch.all(layer.point_head.delta.weight == 0) and torch.all(layer.point_head.delta.bias == 0)
    xavier = [
        layer.query_mixer.self_attn.in_proj_weight,
        layer.query_mixer.self_attn.out_proj.weight,
        layer.mixing.channel_generator.weight,
        layer.mixing.frame_generator.weight,
        layer.mixing.fuse.weight,
        layer.ffn[0].weight,
        layer.ffn[3].weight,
        layer.class_head.hidden[0].weight,
        layer.class_head.logits.weight,
        layer.point_head.hidden[0].weight,
    ]
    for weight in xavier:
        bound = xavier_bound(weight)
        assert weight.abs().max() <= bound
        assert weight.abs().max() > 0.9 * bound
        assert weight.std().item() == pytest.approx(bound / 3**0.5, rel=0.2)


def test_mamba_blocks_add_parameters_beside_pointtads():
    pointtad = set(DecoderLayer(tiny(mamba_blocks=0)).state_dict())
    paper = set(DecoderLayer(tiny(mamba_blocks=2, d_state=4)).state_dict())
    assert pointtad < paper
    assert all(key.startswith("query_mixer.blocks.") for key in paper - pointtad)


def test_mamba_blocks_keep_their_initialisation_in_a_layer():
    layer = DecoderLayer(tiny(mamba_blocks=2, d_state=4))
    for block in layer.query_mixer.blocks:
        a_log = block.mixer.A_log.detach()
        torch.testing.assert_close(a_log, torch.log(torch.arange(1.0, 5.0)).expand_as(a_log))
        torch.testing.assert_close(block.mixer.D.detach(), torch.ones_like(block.mixer.D))


def test_at_initialisation_every_layer_keeps_the_points_in_the_middle():
    cfg = tiny(mamba_blocks=2, d_state=4)
    decoder = Decoder(cfg)
    start = QueryPoints(cfg.queries, cfg.points)(2)
    _, segments, points = decoder(torch.randn(2, 16, 32), start, torch.randn(2, 6, 32))
    assert torch.all(points == 0.5)
    assert torch.all(segments == 0.5)


def test_points_separate_and_offset_heads_learn_from_the_all_middle_start():
    cfg = tiny()
    decoder = Decoder(cfg)
    table = QueryPoints(cfg.queries, cfg.points)
    query = torch.nn.Parameter(torch.randn(cfg.queries, cfg.hidden))
    features = torch.randn(1, 16, cfg.hidden)
    target = torch.tensor([0.2, 0.7])
    optimiser = torch.optim.Adam([*decoder.parameters(), *table.parameters(), query], lr=1e-2)
    delta_grads = []
    for _ in range(30):
        _, segments, _ = decoder(features, table(1), query.unsqueeze(0))
        # PointTAD's segment losses: L1 on (centre, length) and 1 - tIoU
        loss = (to_centre_length(segments) - to_centre_length(target)).abs().sum(-1) + 1 - segment_iou(segments, target)
        loss = loss.mean()
        optimiser.zero_grad()
        loss.backward()
        delta_grads.append(sum(layer.point_head.delta.weight.grad.abs().sum() for layer in decoder.layers))
        optimiser.step()
    # the first step cannot reach the offset heads (every segment has length 0), later ones do
    assert delta_grads[0] == 0
    assert delta_grads[-1] > 0
    assert (table.weight.max(dim=1).values - table.weight.min(dim=1).values).min() > 0.05
    with torch.no_grad():
        _, segments, points = decoder(features, table(1), query.unsqueeze(0))
    # the layers move the points now, and the segments head for the target
    assert (points[-1] - points[0]).abs().max() > 1e-3
    assert (segments[-1] - target).abs().mean() < 0.5 * (0.5 - target).abs().mean()
