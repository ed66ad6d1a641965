"""The interactive module: deformable sampling (eqs. 9-11) and dynamic mixing (eqs. 12-15) against plain loops."""

import math

import pytest
import torch
import torch.nn.functional as F

from mgtutor.model.interactive import DeformableSampling, DynamicMixing, sample_features


def interpolate_by_hand(features, b, position):
    """Linear interpolation of features[b] (t, d) at a position in [0, 1] (index position * (t - 1))."""
    t = features.shape[1]
    x = position * (t - 1)
    left = min(math.floor(x), t - 1)
    right = min(left + 1, t - 1)
    frac = x - left
    return features[b, left] * (1 - frac) + features[b, right] * frac


def randomise(module):
    with torch.no_grad():
        for param in module.parameters():
            param.normal_()
    return module


def test_sample_features_equals_explicit_interpolation():
    features = torch.randn(2, 13, 5, dtype=torch.float64)
    positions = torch.rand(2, 3, 4, dtype=torch.float64)
    positions[0, 0, :3] = torch.tensor([0.0, 1.0, 0.5])  # both ends and a grid point (index 6 of 13)
    sampled = sample_features(features, positions)
    assert sampled.shape == (2, 3, 4, 5)
    for b in range(2):
        for i in range(3):
            for j in range(4):
                expected = interpolate_by_hand(features, b, positions[b, i, j].item())
                torch.testing.assert_close(sampled[b, i, j], expected)
    torch.testing.assert_close(sampled[0, 0, 2], features[0, 6])


def test_sample_features_reads_zeros_beyond_the_window():
    features = torch.ones(1, 5, 2)
    # position 1.125 is index 4.5: half of the last step and half of a zero beyond the end
    torch.testing.assert_close(sample_features(features, torch.tensor([[1.125]])), torch.full((1, 1, 2), 0.5))


def test_sample_features_refuses_bad_shapes():
    with pytest.raises(ValueError, match=r"\(b, t, d\)"):
        sample_features(torch.randn(4, 5), torch.rand(4, 2))
    with pytest.raises(ValueError, match="batch size"):
        sample_features(torch.randn(2, 5, 3), torch.rand(3, 2))


def test_deformable_sampling_equals_explicit_loop():
    hidden, points, subpoints, boundary = 6, 7, 4, 3
    sampling = randomise(DeformableSampling(hidden, points, subpoints, boundary)).double()
    query = torch.randn(2, 3, hidden, dtype=torch.float64)
    features = torch.randn(2, 11, hidden, dtype=torch.float64)
    pts = torch.rand(2, 3, points, dtype=torch.float64)
    out = sampling(query, features, pts)
    assert out.shape == (2, 3, points, hidden)
    t = features.shape[1]
    groups = sampling.groups
    for b in range(2):
        for i in range(3):
            for j in range(points):
                heads = groups["boundary"] if j < boundary else groups["centre"]
                offsets = heads["offsets"](query[b, i])
                weights = torch.softmax(heads["weights"](query[b, i]), dim=0)
                positions = [min(max(pts[b, i, j].item() + offsets[k].item() / t, 0.0), 1.0) for k in range(subpoints)]
                expected = sum(weights[k] * interpolate_by_hand(features, b, positions[k]) for k in range(subpoints))
                torch.testing.assert_close(out[b, i, j], expected)


def test_deformable_sampling_starts_one_to_s_steps_after_each_point_with_equal_weights():
    sampling = DeformableSampling(hidden=8, points=30, subpoints=4, boundary_points=4)
    points = torch.rand(2, 5, 30) * 0.8
    positions, weights = sampling.subpoint_positions(torch.randn(2, 5, 8), points, steps=32)
    expected = points.unsqueeze(-1) + torch.arange(1, 5) / 32
    torch.testing.assert_close(positions, expected)
    torch.testing.assert_close(weights, torch.full((2, 5, 30, 4), 0.25))


@pytest.mark.parametrize("boundary", [0, 5])
def test_deformable_sampling_without_one_group(boundary):
    sampling = DeformableSampling(hidden=4, points=5, subpoints=2, boundary_points=boundary)
    assert list(sampling.groups) == (["boundary"] if boundary else ["centre"])
    out = sampling(torch.randn(1, 2, 4), torch.randn(1, 6, 4), torch.rand(1, 2, 5))
    assert out.shape == (1, 2, 5, 4)


def test_gradients_reach_the_deformable_heads_and_the_points():
    sampling = randomise(DeformableSampling(hidden=8, points=6, subpoints=4, boundary_points=2))
    with torch.no_grad():
        for heads in sampling.groups.values():
            heads["offsets"].weight.mul_(0.1)  # keep sub-points inside the window, away from the clamp
    points = (0.3 + 0.4 * torch.rand(1, 3, 6)).requires_grad_()
    out = sampling(torch.randn(1, 3, 8), torch.randn(1, 16, 8), points)
    out.square().sum().backward()
    for heads in sampling.groups.values():
        assert heads["offsets"].weight.grad.abs().sum() > 0
        assert heads["weights"].weight.grad.abs().sum() > 0
    assert torch.all(points.grad != 0)


def mixing_by_hand(mixing, query, point_features):
    """DynamicMixing for one query at a time, written as PointTAD's ParallelMixing with torch.mm."""
    d, m, p = mixing.hidden, mixing.mix_dim, mixing.points
    out = torch.empty(query.shape[0], query.shape[1], d, dtype=query.dtype)
    parts = {}
    for b in range(query.shape[0]):
        for i in range(query.shape[1]):
            params = mixing.channel_generator(query[b, i])
            w1 = params[: d * m].view(d, m)
            w2 = params[d * m :].view(m, d)
            frame = mixing.frame_generator(query[b, i]).view(p, p)
            x = point_features[b, i]  # (p, d)
            frames = F.relu(mixing.frame_norm(x.t().mm(frame))).t()
            channel = F.relu(mixing.channel_norm_in(x.mm(w1)))
            channel = F.relu(mixing.channel_norm_out(channel.mm(w2)))
            fused = mixing.fuse(torch.cat((channel, frames), dim=-1).flatten())
            out[b, i] = F.relu(mixing.fuse_norm(fused))
            parts[b, i] = (frames, channel)
    return out, parts


def test_dynamic_mixing_equals_a_loop_over_queries():
    mixing = randomise(DynamicMixing(hidden=8, points=5, mix_dim=3)).double()
    with torch.no_grad():
        mixing.channel_generator.weight.mul_(0.3)
    query = torch.randn(2, 4, 8, dtype=torch.float64)
    point_features = torch.randn(2, 4, 5, 8, dtype=torch.float64)
    expected, parts = mixing_by_hand(mixing, query, point_features)
    torch.testing.assert_close(mixing(query, point_features), expected)
    w1, w2, frame = mixing.dynamic_weights(query)
    assert w1.shape == (2, 4, 8, 3) and w2.shape == (2, 4, 3, 8) and frame.shape == (2, 4, 5, 5)
    frames = mixing.frame_mix(point_features, frame)
    channel = mixing.channel_mix(point_features, w1, w2)
    for (b, i), (frames_i, channel_i) in parts.items():
        torch.testing.assert_close(frames[b, i], frames_i)
        torch.testing.assert_close(channel[b, i], channel_i)


def test_dynamic_mixing_parameter_count_at_paper_size():
    # d = 512, m = 64, p = 30: the generators and fusion hold about 50M parameters a layer
    d, m, p = 512, 64, 30
    mixing = DynamicMixing(d, p, m)
    count = sum(param.numel() for param in mixing.parameters())
    generators = (d + 1) * 2 * d * m + (d + 1) * p * p
    fusion = (2 * p * d + 1) * d
    norms = 2 * (m + d + p + d)
    assert count == generators + fusion + norms
    assert 49e6 < count < 51e6


def test_dynamic_mixing_refuses_wrong_point_features():
    mixing = DynamicMixing(hidden=8, points=5, mix_dim=3)
    with pytest.raises(ValueError, match="point features"):
        mixing(torch.randn(1, 2, 8), torch.randn(1, 2, 4, 8))
