"""The detector: shapes at tiny and paper sizes, parameter groups and table, and overfitting one window."""

import pytest
import torch

from mgtutor.config import ModelConfig, TrainConfig
from mgtutor.model.detector import Detector, DetectorOutput, parameter_table
from mgtutor.model.query_points import points_to_segments
from mgtutor.train.losses import SetCriterion


def tiny(**overrides):
    values = dict(
        encoder="features", feature_dim=24, hidden=32, queries=8, points=9, layers=2, heads=4, ffn=64,
        mix_dim=8, num_classes=5, mamba_blocks=0,
    )
    values.update(overrides)
    return ModelConfig(**values)


def test_tiny_detector_on_features():
    detector = Detector(tiny())
    out = detector(torch.randn(2, 24, 16))
    assert isinstance(out, DetectorOutput)
    assert out.logits.shape == (2, 2, 8, 6)
    assert out.segments.shape == (2, 2, 8, 2)
    assert out.points.shape == (3, 2, 8, 9)
    assert out.dense.shape == (2, 16, 5)
    torch.testing.assert_close(out.segments, points_to_segments(out.points[1:]))
    assert torch.all(out.points == 0.5)  # the all-middle start, unchanged by every layer at initialisation


def test_initial_points_change_only_the_point_table():
    torch.manual_seed(3)
    middle = Detector(tiny())
    torch.manual_seed(3)
    spread = Detector(tiny(initial_points="spread"))
    for (name, a), (_, b) in zip(middle.state_dict().items(), spread.state_dict().items()):
        if name != "query_points.weight":
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    features = torch.randn(2, 24, 16)
    first = [detector.eval()(features).segments[0] for detector in (middle, spread)]  # layer 0: (b, q, 2)
    assert torch.all(first[0] == 0.5)  # every query, every window: the same zero-length segment
    assert len({tuple(s) for s in first[1][0].tolist()}) == 8 and torch.all(first[1][..., 1] > first[1][..., 0])
    torch.testing.assert_close(first[1], points_to_segments(spread.query_points.weight).expand(2, -1, -1))


def test_tiny_detector_on_clips_with_the_small_encoder():
    detector = Detector(tiny(encoder="small"))
    out = detector(torch.rand(1, 3, 16, 32, 32) * 2 - 1)
    assert out.logits.shape == (2, 1, 8, 6)
    assert out.dense.shape == (1, 4, 5)


def test_dense_head_can_be_switched_off():
    detector = Detector(tiny(dense_head=False))
    assert detector.dense_head is None
    assert detector(torch.randn(1, 24, 8)).dense is None


def test_wrong_input_is_refused():
    with pytest.raises(ValueError, match="features"):
        Detector(tiny())(torch.randn(1, 3, 16, 32, 32))
    with pytest.raises(ValueError, match="clip"):
        Detector(tiny(encoder="small"))(torch.randn(1, 24, 8))


def test_paper_configuration_runs_once_on_features():
    # the paper's model: hidden 512, 48 queries, 30 points, 4 layers, mix 64 (about 50M mixing parameters a
    # layer), 2 Mamba blocks before the attention
    cfg = ModelConfig(encoder="features", feature_dim=1024)
    assert cfg.mamba_blocks == 2
    detector = Detector(cfg).eval()
    with torch.no_grad():
        out = detector(torch.randn(1, 1024, 32))
    assert out.logits.shape == (4, 1, 48, 18)
    assert out.segments.shape == (4, 1, 48, 2)
    assert out.points.shape == (5, 1, 48, 30)
    assert out.dense.shape == (1, 32, 17)
    assert torch.isfinite(out.logits).all()


def test_param_groups_split_encoder_decoder_and_no_decay():
    detector = Detector(tiny(encoder="small"))
    groups = detector.param_groups(lr=1e-3, encoder_lr_scale=0.1)
    by_name = {group["name"]: group for group in groups}
    assert by_name["encoder"]["lr"] == pytest.approx(1e-4)
    assert by_name["decoder"]["lr"] == 1e-3
    backbone = {id(p) for p in detector.encoder.backbone.parameters()}
    assert {id(p) for p in by_name["encoder"]["params"]} == backbone
    # the projection trains at the full rate, as PointTAD's input projections
    assert all(id(p) in {id(q) for q in by_name["decoder"]["params"]} for p in detector.encoder.head_parameters())
    listed = [id(p) for group in groups for p in group["params"]]
    assert sorted(listed) == sorted(id(p) for p in detector.parameters())
    torch.optim.AdamW(groups, lr=1e-3, weight_decay=1e-4)
    assert detector.param_groups(lr=1.0)[0]["lr"] == pytest.approx(detector.cfg.encoder_lr_scale)


def test_mamba_parameters_go_without_weight_decay():
    detector = Detector(tiny(mamba_blocks=2, d_state=4))
    by_name = {group["name"]: group for group in detector.param_groups(lr=1e-3)}
    assert by_name["no_decay"]["weight_decay"] == 0.0
    mixers = [block.mixer for layer in detector.decoder.layers for block in layer.query_mixer.blocks]
    assert len(mixers) == 4
    expected = {id(p) for mixer in mixers for p in (mixer.A_log, mixer.D)}
    assert {id(p) for p in by_name["no_decay"]["params"]} == expected
    assert all(id(p) not in expected for p in by_name["decoder"]["params"])


def test_param_groups_leave_out_a_frozen_backbone():
    detector = Detector(tiny(encoder="small", freeze_encoder=True))
    names = [group["name"] for group in detector.param_groups(lr=1e-3)]
    assert "encoder" not in names


@pytest.mark.parametrize("order", ["given", "centre", "bidirectional"])
def test_paper_model_with_each_query_order(order):
    detector = Detector(tiny(mamba_blocks=2, d_state=4, query_order=order))
    out = detector(torch.randn(2, 24, 16))
    assert out.logits.shape == (2, 2, 8, 6) and out.points.shape == (3, 2, 8, 9)
    # Mamba keeps its own initialisation inside the detector
    mixer = detector.decoder.layers[1].query_mixer.blocks[1].mixer
    torch.testing.assert_close(mixer.A_log.detach(), torch.log(torch.arange(1.0, 5.0)).expand_as(mixer.A_log))
    # and under bf16 autocast, as the training engine runs it on CUDA
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = detector(torch.randn(2, 24, 16))
    assert mixed.logits.shape == out.logits.shape and mixed.points.dtype == torch.float32
    mixed.logits.float().sum().backward()


def test_centre_ordered_detector_is_equivariant_to_permuting_the_queries():
    torch.manual_seed(0)
    detector = Detector(tiny(mamba_blocks=2, d_state=4, query_order="centre")).eval()
    with torch.no_grad():
        detector.query_points.weight.uniform_(0.2, 0.8)  # distinct centres, so the order is the content's
        for layer in detector.decoder.layers:
            layer.point_head.delta.weight.normal_(0, 0.05)
    features = torch.randn(1, 24, 16)
    out = detector(features)
    perm = torch.randperm(8)
    with torch.no_grad():
        detector.query_vectors.copy_(detector.query_vectors[perm])
        detector.query_points.weight.copy_(detector.query_points.weight[perm])
    permuted = detector(features)
    torch.testing.assert_close(permuted.logits, out.logits[:, :, perm])
    torch.testing.assert_close(permuted.points, out.points[:, :, perm])
    # with the order as given, the same permutation changes the predictions
    given = Detector(tiny(mamba_blocks=2, d_state=4, query_order="given")).eval()
    given.load_state_dict(detector.state_dict())
    assert not torch.allclose(given(features).logits[:, :, perm], out.logits, atol=1e-4)


def test_parameter_table_adds_up():
    detector = Detector(tiny())
    table = parameter_table(detector)
    assert table["total"] == sum(p.numel() for p in detector.parameters())
    top = ["encoder", "dense_head", "query_vectors", "query_points", "decoder"]
    assert sum(table[name] for name in top) == table["total"]
    assert sum(table[f"decoder.layers.{i}"] for i in range(2)) == table["decoder"]
    layer = "decoder.layers.0"
    parts = [key for key in table if key.startswith(layer + ".") and key.count(".") == 3]
    assert sum(table[key] for key in parts) == table[layer]
    assert table[f"{layer}.mixing.channel_generator"] == 32 * 2 * 32 * 8 + 2 * 32 * 8


@pytest.mark.slow
@pytest.mark.parametrize("mamba_blocks", [0, 2], ids=["pointtad", "mamba_mhsa"])
def test_tiny_detector_overfits_one_window(mamba_blocks):
    torch.manual_seed(0)
    cfg = tiny(queries=6, layers=2, mix_dim=4, dropout=0.0, mamba_blocks=mamba_blocks, d_state=4)
    detector = Detector(cfg)
    features = torch.randn(1, 24, 16)
    targets = [{"segments": torch.tensor([[0.1, 0.35], [0.5, 0.9]]), "labels": torch.tensor([1, 3])}]
    criterion = SetCriterion(TrainConfig(), cfg.num_classes)
    optimiser = torch.optim.AdamW(detector.param_groups(lr=1e-3, encoder_lr_scale=1.0), weight_decay=1e-4)
    losses = []
    for _ in range(300):
        loss = criterion(detector(features), targets)["total"]
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(detector.parameters(), 0.1)
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10
    detector.eval()
    with torch.no_grad():
        out = detector(features)
    labels = out.logits[-1, 0].argmax(-1)
    found = {int(labels[i]): out.segments[-1, 0, i] for i in range(cfg.queries) if labels[i] < cfg.num_classes}
    assert sorted(found) == [1, 3]
    torch.testing.assert_close(torch.stack([found[1], found[3]]), targets[0]["segments"], atol=0.05, rtol=0)
