"""PointTAD's set-prediction loss: each term against a hand computation on a tiny case."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist

from mgtutor.config import ModelConfig, TrainConfig
from mgtutor.model.detector import Detector, DetectorOutput
from mgtutor.train.losses import SetCriterion, auxiliary_layers, dense_targets


def detector_output(logits, segments, dense=None):
    """A ``DetectorOutput`` with the given logits (L, b, q, k + 1), segments (L, b, q, 2), dense (b, t, k)."""
    points = torch.zeros(logits.shape[0] + 1, *logits.shape[1:3], 3)  # not read by the criterion
    return DetectorOutput(logits, segments, points, dense)


def target(labels, segments):
    return {"labels": torch.tensor(labels, dtype=torch.long), "segments": torch.tensor(segments).reshape(-1, 2)}


def tiny_case():
    """k = 2 classes, q = 3 queries, one window, one gesture of class 1 at (0.2, 0.6); query 0 is its match."""
    logits = torch.tensor([[[[0.0, 2.0, 0.0], [0.0, 0.0, 3.0], [1.0, 0.0, 0.0]]]])
    segments = torch.tensor([[[[0.2, 0.5], [0.7, 0.9], [0.0, 0.1]]]])
    dense = torch.tensor([[[0.5, -1.0], [0.0, 2.0], [-0.5, 1.0], [1.5, 0.0]]])  # (b=1, t=4, k=2)
    return detector_output(logits, segments, dense), [target([1], [0.2, 0.6])]


def test_each_term_by_hand():
    output, targets = tiny_case()
    criterion = SetCriterion(TrainConfig(), num_classes=2)
    assert [m.tolist() for m in criterion.match(output, targets)[0]] == [[0], [0]]
    losses = criterion(output, targets)

    # cross-entropy: query 0 -> class 1 (weight 1); queries 1, 2 -> no object (weight 0.1); weighted mean
    nll = [math.log(1 + math.exp(2) + 1) - 2, math.log(1 + 1 + math.exp(3)) - 3, math.log(math.e + 1 + 1) - 0]
    expected_class = (nll[0] + 0.1 * nll[1] + 0.1 * nll[2]) / 1.2
    assert losses["class"].item() == pytest.approx(expected_class, rel=1e-6)
    # L1 on (centre, length): (0.35, 0.3) vs (0.4, 0.4); one gesture
    assert losses["l1"].item() == pytest.approx(0.05 + 0.1, rel=1e-6)
    # tIoU of (0.2, 0.5) and (0.2, 0.6) is 0.3 / 0.4
    assert losses["iou"].item() == pytest.approx(0.25, rel=1e-6)
    # dense: t = 4; the gesture covers steps floor(0.8) = 0 .. floor(2.4) = 2 of class 1
    y = [[0, 1], [0, 1], [0, 1], [0, 0]]
    x = output.dense[0].tolist()
    bce = [math.log1p(math.exp(-x[i][c] if y[i][c] else x[i][c])) for i in range(4) for c in range(2)]
    assert losses["dense"].item() == pytest.approx(sum(bce) / 8, rel=1e-6)
    total = expected_class + 5 * 0.15 + 5 * 0.25 + 5 * sum(bce) / 8
    assert losses["total"].item() == pytest.approx(total, rel=1e-6)
    assert set(losses) == {"class", "l1", "iou", "dense", "total"}


def test_weights_come_from_the_config():
    output, targets = tiny_case()
    base = SetCriterion(TrainConfig(), 2)(output, targets)
    cfg = TrainConfig(class_weight=2.0, l1_weight=1.0, iou_weight=3.0, dense_weight=0.5, no_object_weight=1.0)
    losses = SetCriterion(cfg, 2)(output, targets)
    nll = [math.log(2 + math.exp(2)) - 2, math.log(2 + math.exp(3)) - 3, math.log(math.e + 2)]
    assert losses["class"].item() == pytest.approx(sum(nll) / 3, rel=1e-6)  # no-object weight 1: plain mean
    expected = 2 * losses["class"] + 1 * base["l1"] + 3 * base["iou"] + 0.5 * base["dense"]
    assert losses["total"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_dense_targets_rule():
    targets = [target([0, 2], [[0.25, 0.5], [0.9, 1.0]]), target([], [])]
    dense = dense_targets(targets, steps=4, num_classes=3)
    expected = torch.zeros(2, 4, 3)
    expected[0, 1:3, 0] = 1  # [0.25, 0.5] meets the cells [0.25, 0.5) and [0.5, 0.75) (its end touches the latter)
    expected[0, 3, 2] = 1  # an end at 1.0 stays in the last step
    torch.testing.assert_close(dense, expected)


def test_dense_targets_against_interval_test():
    generator = torch.Generator().manual_seed(1)
    segments = torch.rand(20, 2, generator=generator).sort(-1).values
    labels = torch.randint(0, 3, (20,), generator=generator)
    dense = dense_targets([{"segments": segments, "labels": labels}], steps=7, num_classes=3)[0]
    expected = torch.zeros(7, 3)
    for (s, e), c in zip(segments.tolist(), labels.tolist()):
        for i in range(7):
            if s < (i + 1) / 7 and e >= i / 7:  # closed segment meets half-open cell [i/t, (i+1)/t)
                expected[i, c] = 1
    torch.testing.assert_close(dense, expected)


def test_normalised_by_ground_truth_count_across_the_batch():
    # window 0: two gestures matched exactly except for known L1 errors; window 1: no gesture
    logits = torch.full((1, 2, 3, 3), -4.0)
    logits[0, 0, 0, 0] = logits[0, 0, 1, 1] = 4.0
    logits[0, :, :, 2] = torch.tensor([[-4.0, -4.0, 4.0], [4.0, 4.0, 4.0]])
    segments = torch.tensor([[[[0.1, 0.3], [0.5, 0.9], [0.0, 1.0]], [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]]])
    targets = [target([0, 1], [[0.1, 0.2], [0.5, 0.8]]), target([], [])]
    criterion = SetCriterion(TrainConfig(aux_loss=False), 2)
    losses = criterion(detector_output(logits, segments), targets)
    # L1: (0.2, 0.2) vs (0.15, 0.1) -> 0.15; (0.7, 0.4) vs (0.65, 0.3) -> 0.15; N = 2
    assert losses["l1"].item() == pytest.approx(0.3 / 2, rel=1e-5)
    # tIoU 0.1 / 0.2 and 0.3 / 0.4
    assert losses["iou"].item() == pytest.approx((0.5 + 0.25) / 2, rel=1e-5)
    assert "dense" not in losses


def test_batch_without_ground_truth():
    logits = torch.randn(2, 1, 4, 3, requires_grad=True)
    segments = torch.rand(2, 1, 4, 2).sort(-1).values.requires_grad_()
    losses = SetCriterion(TrainConfig(), 2)(detector_output(logits, segments), [target([], [])])
    assert losses["l1"].item() == 0.0 and losses["iou"].item() == 0.0
    # every query is pushed to "no object" (all weights equal, so a plain mean)
    expected = torch.nn.functional.cross_entropy(logits[-1, 0], torch.full((4,), 2))
    assert losses["class"].item() == pytest.approx(expected.item(), rel=1e-6)
    losses["total"].backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(segments.grad).all()
    assert set(losses) == {"class", "l1", "iou", "class_0", "l1_0", "iou_0", "total"}


def test_aux_layers_are_matched_again():
    # two gestures; the first layer's queries predict them in the opposite order to the last layer's
    targets = [target([0, 1], [[0.1, 0.3], [0.6, 0.9]])]
    last = torch.tensor([[0.1, 0.3], [0.6, 0.9]])
    segments = torch.stack([last.flip(0), last])[:, None]  # (L=2, b=1, q=2, 2)
    logits = torch.zeros(2, 1, 2, 3)
    criterion = SetCriterion(TrainConfig(), 2)
    output = detector_output(logits, segments)
    first_match = criterion.match(output, targets, layer=0)[0]
    last_match = criterion.match(output, targets, layer=1)[0]
    assert first_match[1].tolist() == [1, 0] and last_match[1].tolist() == [0, 1]
    losses = criterion(output, targets)
    assert losses["l1_0"].item() == pytest.approx(0.0, abs=1e-6)  # perfect once matched per layer
    assert losses["iou_0"].item() == pytest.approx(0.0, abs=1e-6)
    one_layer = criterion.layer_losses(logits[0], segments[0], targets, [first_match], torch.tensor(2.0))
    assert losses["class_0"].item() == pytest.approx(one_layer["class"].item())
    expected_total = sum(
        w * losses[name] for name, w in [("class", 1), ("l1", 5), ("iou", 5), ("class_0", 1), ("l1_0", 5), ("iou_0", 5)]
    )
    assert losses["total"].item() == pytest.approx(expected_total.item(), rel=1e-6)
    no_aux = SetCriterion(TrainConfig(aux_loss=False), 2)(output, targets)
    assert set(no_aux) == {"class", "l1", "iou", "total"}


@pytest.mark.parametrize("layers", [1, 2, 4, 6])
@pytest.mark.parametrize("batch", [1, 2, 3, 5])
def test_pointtad_aux_layers_are_what_its_zip_yields(layers, batch):
    # PointTAD's _set_aux_loss: zip(outputs_class[:-1], outputs_coord[:-1], logits), logits (b, t, k)
    outputs_class = torch.zeros(layers, batch, 3, 4)
    outputs_coord = torch.zeros(layers, batch, 3, 2)
    logits = torch.zeros(batch, 8, 3)
    zipped = [i for i, _ in enumerate(zip(outputs_class[:-1], outputs_coord[:-1], logits))]
    assert auxiliary_layers(layers, batch, aux_layers="pointtad") == zipped
    assert auxiliary_layers(layers, batch, aux_layers="all") == list(range(layers - 1))
    assert auxiliary_layers(layers, batch, aux_loss=False, aux_layers="pointtad") == []


def test_auxiliary_layers_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="aux_layers"):
        auxiliary_layers(4, 1, aux_layers="some")


def four_layer_case(batch):
    """L = 4 layers, ``batch`` windows of q = 3 queries, each window one gesture; every layer different."""
    generator = torch.Generator().manual_seed(batch)
    logits = torch.randn(4, batch, 3, 3, generator=generator)
    segments = torch.rand(4, batch, 3, 2, generator=generator).sort(-1).values
    dense = torch.randn(batch, 4, 2, generator=generator)
    targets = [target([w % 2], [0.1 + 0.1 * w, 0.5 + 0.1 * w]) for w in range(batch)]
    return detector_output(logits, segments, dense), targets


@pytest.mark.parametrize(
    ("aux_layers", "batch", "supervised"),
    [("all", 1, [0, 1, 2]), ("all", 2, [0, 1, 2]), ("pointtad", 1, [0]), ("pointtad", 2, [0, 1])],
)
def test_the_loss_holds_exactly_the_supervised_layers(aux_layers, batch, supervised):
    output, targets = four_layer_case(batch)
    losses = SetCriterion(TrainConfig(aux_layers=aux_layers), 2)(output, targets)
    expected_keys = {"class", "l1", "iou", "dense", "total"} | {f"{t}_{i}" for i in supervised for t in ("class", "l1", "iou")}
    assert set(losses) == expected_keys
    # the total is the weighted sum of exactly those layers' terms, each as the layer alone gives it
    alone = SetCriterion(TrainConfig(aux_loss=False), 2)
    expected = alone(output, targets)["total"]
    for layer in supervised:
        one = detector_output(output.logits[layer : layer + 1], output.segments[layer : layer + 1])
        terms = alone(one, targets)
        for t in ("class", "l1", "iou"):
            assert losses[f"{t}_{layer}"].item() == pytest.approx(terms[t].item(), rel=1e-6)
        expected = expected + terms["total"]
    assert losses["total"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_gradients_reach_every_output():
    output, targets = tiny_case()
    output = detector_output(*(t.clone().requires_grad_() for t in (output.logits, output.segments, output.dense)))
    SetCriterion(TrainConfig(), 2)(output, targets)["total"].backward()
    for tensor in (output.logits, output.segments, output.dense):
        assert torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0


def test_bad_shapes_are_refused():
    output, targets = tiny_case()
    with pytest.raises(ValueError, match="for 3 classes"):
        SetCriterion(TrainConfig(), 3)(output, targets)
    with pytest.raises(ValueError, match="dense logits"):
        SetCriterion(TrainConfig(), 2)(detector_output(output.logits, output.segments, torch.zeros(1, 4, 5)), targets)


def test_single_process_group_normaliser(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        output, targets = tiny_case()
        losses = SetCriterion(TrainConfig(), 2)(output, targets)
        assert losses["l1"].item() == pytest.approx(0.15, rel=1e-6)
    finally:
        dist.destroy_process_group()


def test_a_real_detector_output_trains():
    config = ModelConfig(
        encoder="features", feature_dim=16, hidden=32, queries=6, points=6, layers=2, heads=4, ffn=32, mix_dim=8,
        boundary_points=2, mamba_blocks=0,
    )  # fmt: skip
    model = Detector(config)
    output = model(torch.randn(2, 16, 8))
    targets = [target([3, 16], [[0.1, 0.4], [0.5, 0.55]]), target([], [])]
    losses = SetCriterion(TrainConfig(), config.num_classes)(output, targets)
    assert set(losses) == {"class", "l1", "iou", "dense", "class_0", "l1_0", "iou_0", "total"}
    losses["total"].backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
