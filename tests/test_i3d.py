"""Inception-I3D: TF "SAME" padding, BatchNorm without scale, endpoint shapes, PointTAD's temporal stride 4."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mgtutor.model.i3d import ENDPOINTS, BatchNorm3dNoScale, InceptionI3d, MaxPool3dSame, Unit3D, pad_same, same_padding

CHANNELS = {
    "Conv3d_1a_7x7": 64, "MaxPool3d_2a_3x3": 64, "Conv3d_2b_1x1": 64, "Conv3d_2c_3x3": 192, "MaxPool3d_3a_3x3": 192,
    "Mixed_3b": 256, "Mixed_3c": 480, "MaxPool3d_4a_3x3": 480, "Mixed_4b": 512, "Mixed_4c": 512, "Mixed_4d": 512,
    "Mixed_4e": 528, "Mixed_4f": 832, "MaxPool3d_5a_2x2": 832, "Mixed_5b": 832, "Mixed_5c": 1024,
}  # fmt: skip


@pytest.fixture(scope="module")
def classifier() -> InceptionI3d:
    return InceptionI3d().eval()


@pytest.fixture(scope="module")
def backbone() -> InceptionI3d:
    """PointTAD's variant, without classifier."""
    return InceptionI3d(num_classes=None, temporal_stride=4).eval()


@pytest.mark.parametrize(
    "size, kernel, stride, expected",
    [
        (79, 7, 2, (3, 3)),  # out 40: 39 * 2 + 7 - 79 = 6
        (224, 7, 2, (2, 3)),  # out 112: 111 * 2 + 7 - 224 = 5, the odd pixel after
        (112, 3, 2, (0, 1)),  # out 56: 55 * 2 + 3 - 112 = 1
        (40, 3, 2, (0, 1)),
        (7, 2, 2, (0, 1)),  # out 4: 3 * 2 + 2 - 7 = 1
        (8, 2, 2, (0, 0)),
        (5, 3, 1, (1, 1)),
        (5, 1, 1, (0, 0)),
        (3, 7, 2, (3, 3)),  # out 2: 1 * 2 + 7 - 3 = 6, more padding than input
    ],
)
def test_same_padding_worked_examples(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected


def test_same_padding_is_tensorflows_rule():
    for size in range(1, 30):
        for kernel in range(1, 8):
            for stride in range(1, 4):
                before, after = same_padding(size, kernel, stride)
                assert before <= after <= before + 1
                out = (size + before + after - kernel) // stride + 1
                assert out == math.ceil(size / stride), (size, kernel, stride)
                # TF pads no more than the last window needs
                assert before + after == max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)


def test_unit3d_equals_explicit_padding():
    torch.manual_seed(1)
    unit = Unit3D(3, 5, kernel=(7, 7, 7), stride=(2, 2, 2)).eval()
    with torch.no_grad():
        unit.bn.bias.normal_()
        unit.bn.running_mean.normal_()
        unit.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 9, 21, 14)
    # by hand: t 9 -> 5 steps, pad 4*2+7-9 = 6 -> (3, 3); h 21 -> 11, 10*2+7-21 = 6 -> (3, 3); w 14 -> 7, 6*2+7-14 = 5 -> (2, 3)
    padded = F.pad(x, (2, 3, 3, 3, 3, 3))
    conv = F.conv3d(padded, unit.conv.weight, stride=2)
    bn = (conv - unit.bn.running_mean.view(1, -1, 1, 1, 1)) / torch.sqrt(unit.bn.running_var.view(1, -1, 1, 1, 1) + 1e-3)
    expected = F.relu(bn + unit.bn.bias.view(1, -1, 1, 1, 1))
    torch.testing.assert_close(unit(x), expected)
    assert unit(x).shape == (2, 5, 5, 11, 7)


def test_max_pool_padding_never_wins():
    x = -torch.rand(1, 2, 5, 7, 6) - 1.0  # all negative: a zero-padded pool would return 0 at the borders
    pool = MaxPool3dSame((3, 3, 3), (2, 2, 2))
    out = pool(x)
    assert out.shape == (1, 2, 3, 4, 3)
    assert (out < -1.0 + 1e-6).all()
    # explicit: window starting at index i * 2 - pad_before, clipped to the valid cells
    pads = [same_padding(s, 3, 2)[0] for s in x.shape[2:]]
    for t in range(3):
        for h in range(4):
            for w in range(3):
                lo = [i * 2 - p for i, p in zip((t, h, w), pads)]
                cells = x[:, :, max(lo[0], 0) : lo[0] + 3, max(lo[1], 0) : lo[1] + 3, max(lo[2], 0) : lo[2] + 3]
                torch.testing.assert_close(out[:, :, t, h, w], cells.amax(dim=(2, 3, 4)))


def test_pad_same_leaves_pointwise_layers_alone():
    x = torch.randn(1, 2, 3, 4, 5)
    assert pad_same(x, (1, 1, 1), (1, 1, 1)) is x


def test_batchnorm_has_no_scale(classifier):
    bn = BatchNorm3dNoScale(4)
    names = dict(bn.named_parameters())
    assert list(names) == ["bias"]
    assert bn.weight is None and bn.eps == 1e-3
    assert set(bn.state_dict()) == {"bias", "running_mean", "running_var", "num_batches_tracked"}
    assert not any(name.endswith("bn.weight") for name, _ in classifier.named_parameters())
    convs = [m for m in classifier.modules() if isinstance(m, torch.nn.Conv3d)]
    assert sum(m.bias is not None for m in convs) == 1  # only the classifier has a bias


def test_batchnorm_training_normalises_without_scale():
    bn = BatchNorm3dNoScale(3).train()
    with torch.no_grad():
        bn.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    x = torch.randn(2, 3, 4, 5, 6) * 3 + 1
    y = bn(x)
    mean = x.mean(dim=(0, 2, 3, 4), keepdim=True)
    var = x.var(dim=(0, 2, 3, 4), unbiased=False, keepdim=True)
    torch.testing.assert_close(y, (x - mean) / torch.sqrt(var + 1e-3) + bn.bias.view(1, -1, 1, 1, 1))


def test_endpoint_shapes_original_network(classifier):
    x = torch.randn(1, 3, 16, 64, 64)
    with torch.no_grad():
        out = classifier.endpoints(x)
    assert list(out) == list(ENDPOINTS)
    # time halves at 1a, 4a, 5a; space at 1a, 2a, 3a, 4a, 5a
    expected_t = {"Conv3d_1a_7x7": 8, "MaxPool3d_4a_3x3": 4, "MaxPool3d_5a_2x2": 2}
    expected_s = {"Conv3d_1a_7x7": 32, "MaxPool3d_2a_3x3": 16, "MaxPool3d_3a_3x3": 8, "MaxPool3d_4a_3x3": 4, "MaxPool3d_5a_2x2": 2}
    t, s = 16, 64
    for name in ENDPOINTS:
        t, s = expected_t.get(name, t), expected_s.get(name, s)
        assert out[name].shape == (1, CHANNELS[name], t, s, s), name


@pytest.mark.parametrize("frames", [4, 8, 12, 128])
def test_temporal_stride_four_is_exact(backbone, frames):
    with torch.no_grad():
        out = backbone.endpoints(torch.randn(1, 3, frames, 16, 16), ("Mixed_4f", "Mixed_5c"))
    assert out["Mixed_4f"].shape == (1, 832, frames // 4, 1, 1)
    assert out["Mixed_5c"].shape == (1, 1024, frames // 4, 1, 1)


def test_odd_sizes_round_up_like_same_padding(backbone):
    with torch.no_grad():
        out = backbone.endpoints(torch.randn(1, 3, 13, 45, 37), ("Mixed_4f", "Mixed_5c"))
    # time: ceil(ceil(13 / 2) / 2) = 4; space: 45 -> 23 -> 12 -> 6 -> 3 -> 2, 37 -> 19 -> 10 -> 5 -> 3 -> 2
    assert out["Mixed_4f"].shape == (1, 832, 4, 3, 3)
    assert out["Mixed_5c"].shape == (1, 1024, 4, 2, 2)


def test_classifier_shape_and_size_check(classifier, backbone):
    with torch.no_grad():
        logits = classifier(torch.randn(2, 3, 9, 193, 193))
    assert logits.shape == (2, 400)
    with pytest.raises(ValueError, match="224x224"):
        classifier(torch.randn(1, 3, 16, 64, 64))
    with pytest.raises(RuntimeError, match="without a classifier"):
        backbone(torch.randn(1, 3, 9, 224, 224))
    with pytest.raises(ValueError, match="unknown I3D endpoint"):
        classifier.endpoints(torch.randn(1, 3, 8, 32, 32), ("Mixed_6a",))
    with pytest.raises(ValueError, match="temporal_stride"):
        InceptionI3d(temporal_stride=2)


def test_parameter_count(classifier, backbone):
    # 12,279,984 in the convolutions and BatchNorm shifts, 1024 * 400 + 400 in the classifier
    assert sum(p.numel() for p in backbone.parameters()) == 12_279_984
    assert sum(p.numel() for p in classifier.parameters()) == 12_279_984 + 1024 * 400 + 400
