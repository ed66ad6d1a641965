"""The detector's encoders: the (b, 3, T, H, W) -> (b, d, T/4) contract, PointTAD's two-level projection,
freezing, parameter groups, the small CPU encoder and its cost."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from einops import reduce
from torch import nn

from mgtutor.config import ModelConfig
from mgtutor.model.encoder import FeatureEncoder, I3DEncoder, SmallEncoder, build_encoder, extract_features
from mgtutor.model.i3d_weights import DEFAULT_WEIGHTS, convert_i3d
from mgtutor.model.small_encoder import SmallVideoNet, frame_differences, frame_residuals

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def i3d() -> I3DEncoder:
    torch.manual_seed(0)
    return I3DEncoder(hidden=64).eval()


@pytest.mark.parametrize("kind", ["i3d", "small", "features"])
def test_build_encoder_contract(kind):
    cfg = ModelConfig(encoder=kind, hidden=64, feature_dim=48)
    encoder = build_encoder(cfg).eval()
    assert encoder.stride == 4
    x = torch.randn(2, 48, 32) if kind == "features" else torch.rand(2, 3, 128, 32, 32) * 2 - 1
    with torch.no_grad():
        y = encoder(x)
    assert y.shape == (2, 64, 32)
    assert torch.isfinite(y).all()


def test_i3d_encoder_on_odd_frame_sizes(i3d):
    with torch.no_grad():
        assert i3d(torch.randn(1, 3, 12, 45, 37)).shape == (1, 64, 3)


def test_clip_length_must_be_a_multiple_of_the_stride(i3d):
    with pytest.raises(ValueError, match="multiple of the encoder's stride 4"):
        i3d(torch.randn(1, 3, 10, 32, 32))
    with pytest.raises(ValueError, match=r"\(b, 3, T, H, W\)"):
        SmallEncoder(hidden=16)(torch.randn(1, 1, 8, 64, 64))
    with pytest.raises(ValueError, match=r"model.feature_dim = 48"):
        FeatureEncoder(48, 16)(torch.randn(1, 40, 8))


def test_i3d_encoder_is_pointtads_two_level_projection(i3d):
    clip = torch.randn(1, 3, 16, 48, 48)
    with torch.no_grad():
        maps = i3d.backbone.endpoints(clip, ("Mixed_4f", "Mixed_5c"))
        f_4f = reduce(maps["Mixed_4f"], "b c t h w -> b c t", "mean")
        f_5c = reduce(maps["Mixed_5c"], "b c t h w -> b c t", "mean")
        expected = torch.einsum("dc,bct->bdt", i3d.proj_4f.weight[..., 0], f_4f) + i3d.proj_4f.bias[:, None]
        expected = expected + torch.einsum("dc,bct->bdt", i3d.proj_5c.weight[..., 0], f_5c) + i3d.proj_5c.bias[:, None]
        torch.testing.assert_close(i3d(clip), expected, rtol=1e-4, atol=1e-5)


def test_cached_features_reproduce_the_frozen_i3d_encoder(i3d):
    clip = torch.randn(1, 3, 8, 32, 32)
    features = extract_features(i3d, clip)
    assert features.shape == (1, 832 + 1024, 2)
    cached = FeatureEncoder(features.shape[1], hidden=64)
    with torch.no_grad():  # one 1x1 convolution of the concatenation = the sum of the two projections
        cached.proj.weight.copy_(torch.cat([i3d.proj_4f.weight, i3d.proj_5c.weight], dim=1))
        cached.proj.bias.copy_(i3d.proj_4f.bias + i3d.proj_5c.bias)
        torch.testing.assert_close(cached(features), i3d(clip), rtol=1e-4, atol=1e-5)


def test_extract_features_restores_the_mode():
    encoder = SmallEncoder(hidden=16).train()
    extract_features(encoder, torch.randn(1, 3, 8, 32, 32))
    assert encoder.training


def test_encoder_weights_are_loaded(tmp_path):
    path = REPO / DEFAULT_WEIGHTS
    if not path.is_file():
        path = convert_i3d(None, tmp_path / "i3d.safetensors")
    from safetensors.torch import load_file

    expected = load_file(str(path))["Mixed_4f.b2b.conv.weight"]
    encoder = build_encoder(ModelConfig(encoder="i3d", hidden=32, encoder_weights=str(path)))
    torch.testing.assert_close(encoder.backbone.Mixed_4f.b2b.conv.weight.detach(), expected, rtol=0, atol=0)
    with pytest.raises(FileNotFoundError, match="mgtutor convert-i3d --out"):
        build_encoder(ModelConfig(encoder="i3d", encoder_weights=str(tmp_path / "absent.safetensors")))


def _batchnorm_stats(module: nn.Module) -> list[torch.Tensor]:
    return [m.running_mean.clone() for m in module.modules() if isinstance(m, nn.BatchNorm3d)]


@pytest.mark.parametrize("frozen", [True, False])
def test_freezing_stops_gradients_and_batchnorm_updates(i3d, frozen):
    encoder = copy.deepcopy(i3d)
    if frozen:
        encoder.freeze()
    encoder.train()
    assert encoder.training and encoder.backbone.training == (not frozen)
    before = _batchnorm_stats(encoder.backbone)
    encoder(torch.randn(1, 3, 8, 32, 32)).square().mean().backward()
    after = _batchnorm_stats(encoder.backbone)
    grads = [p.grad for p in encoder.backbone.parameters()]
    changed = any(not torch.equal(a, b) for a, b in zip(before, after))
    if frozen:
        assert all(g is None for g in grads) and not changed
        assert not any(p.requires_grad for p in encoder.backbone_parameters())
    else:
        assert all(g is not None for g in grads) and changed  # the control: the same step does change them
    assert all(p.grad is not None for p in encoder.head_parameters())


def test_build_encoder_freezes_when_asked():
    encoder = build_encoder(ModelConfig(encoder="small", hidden=16, freeze_encoder=True)).train()
    assert encoder.frozen and not encoder.backbone.training
    assert all(p.requires_grad for p in encoder.head_parameters())
    encoder.freeze(False)
    assert encoder.backbone.training and all(p.requires_grad for p in encoder.backbone_parameters())


@pytest.mark.parametrize("kind", ["i3d", "small", "features"])
def test_parameter_groups_partition_the_encoder(kind):
    encoder = build_encoder(ModelConfig(encoder=kind, hidden=16, feature_dim=8))
    backbone = {id(p) for p in encoder.backbone_parameters()}
    head = {id(p) for p in encoder.head_parameters()}
    assert not backbone & head
    assert backbone | head == {id(p) for p in encoder.parameters()}
    assert len(head) == (4 if kind == "i3d" else 2)  # PointTAD's two projections (weight, bias), or one


def test_frame_differences():
    clip = torch.randn(2, 3, 5, 4, 4)
    diff = frame_differences(clip)
    assert torch.equal(diff[:, :, 0], torch.zeros_like(clip[:, :, 0]))
    torch.testing.assert_close(diff[:, :, 3], clip[:, :, 3] - clip[:, :, 2])


def test_frame_residuals():
    clip = torch.randn(2, 3, 5, 4, 4)
    residual = frame_residuals(clip)
    torch.testing.assert_close(residual.mean(dim=2), torch.zeros(2, 3, 4, 4))
    torch.testing.assert_close(residual[:, :, 3], clip[:, :, 3] - (clip[:, :, 0] + clip[:, :, 1] + clip[:, :, 2] + clip[:, :, 3] + clip[:, :, 4]) / 5)


def test_small_encoder_shapes_and_normalisation():
    net = SmallVideoNet(out_channels=32)
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    assert not any(isinstance(m, nn.GroupNorm) for m in net.modules())
    assert net(torch.randn(1, 3, 128, 64, 64)).shape == (1, 32, 32)
    assert net(torch.randn(1, 3, 128, 48, 48)).shape == (1, 32, 32)
    assert net(torch.randn(2, 3, 20, 96, 72)).shape == (2, 32, 5)
    with pytest.raises(ValueError, match="at least 32x32"):
        net(torch.randn(1, 3, 8, 16, 16))


def test_small_encoder_ignores_what_stays_still():
    """Its inputs are the frames' differences from the window's mean frame and from the previous frame, so
    a still image added to every frame (another background, other clothes) changes nothing; motion does."""
    torch.manual_seed(0)
    net = SmallVideoNet(out_channels=16).eval()
    clip = torch.rand(2, 3, 16, 32, 32) * 2 - 1
    still = torch.rand(2, 3, 1, 32, 32) - 0.5
    with torch.no_grad():
        torch.testing.assert_close(net(clip + still), net(clip), atol=1e-5, rtol=1e-4)
        assert not torch.allclose(net(clip.flip(2)), net(clip), atol=1e-3)


def test_small_encoder_costs_a_few_gflop():
    from torch.utils.flop_counter import FlopCounterMode

    encoder = SmallEncoder(hidden=512).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        encoder(torch.randn(1, 3, 128, 64, 64))
    assert 0.5e9 < counter.get_total_flops() < 4e9
    assert sum(p.numel() for p in encoder.parameters()) < 2_000_000


def test_small_encoder_needs_time_to_tell_a_clip_from_its_reverse():
    """A square moving right vs the same frames played backwards (moving left): per-frame content is equal,
    so only temporal processing (frame differences, 3-D convolutions) can separate them."""
    torch.manual_seed(0)
    frames = torch.full((3, 16, 32, 32), -1.0)
    for t in range(16):
        frames[:, t, 12:20, t + 4 : t + 12] = 1.0
    clips = torch.stack([frames, frames.flip(1)])
    target = torch.tensor([0.0, 1.0])
    encoder = SmallEncoder(hidden=16, channels=32)
    head = nn.Linear(16, 1)
    optim = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=3e-3)
    losses = []
    for _ in range(25):
        logit = head(encoder(clips).mean(-1)).squeeze(-1)
        loss = nn.functional.binary_cross_entropy_with_logits(logit, target)
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert losses[-1] < 0.1 * losses[0]
