"""Linear probes on the decoder's query vectors: the regression, the matched vectors, the per-layer table."""

from __future__ import annotations

import pytest
import torch
from einops import rearrange

from mgtutor.config import ModelConfig
from mgtutor.data.dataset import collate
from mgtutor.eval.probe import linear_probe, probe_layers, query_vectors, recorded_queries
from mgtutor.model.detector import Detector
from mgtutor.train.matching import match_batch


def tiny_detector(**overrides) -> Detector:
    values = dict(
        encoder="features", feature_dim=12, hidden=16, queries=5, points=6, layers=3, heads=2, ffn=32,
        mix_dim=4, num_classes=3, mamba_blocks=0, boundary_points=2,
    )  # fmt: skip
    torch.manual_seed(0)
    return Detector(ModelConfig(**(values | overrides)))


def windows(n: int, seed: int) -> list[dict]:
    """Window items as WindowDataset gives them: features (12, 8) and 1-3 gestures each."""
    generator = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        g = 1 + i % 3
        items.append({
            "features": torch.randn(12, 8, generator=generator),
            "segments": torch.rand(g, 2, generator=generator).sort(-1).values,
            "labels": torch.randint(0, 3, (g,), generator=generator),
            "meta": {},
        })  # fmt: skip
    return items


def test_linear_probe_separates_what_is_separable_and_not_noise():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (400,), generator=generator)
    centres = torch.randn(4, 10, generator=generator) * 3
    x = centres[labels] + torch.randn(400, 10, generator=generator)
    assert linear_probe(x[:300], labels[:300], x[300:], labels[300:], 4) > 0.95
    noise = torch.randn(400, 10, generator=generator)
    assert linear_probe(noise[:300], labels[:300], noise[300:], labels[300:], 4) < 0.45  # chance about 0.25
    # deterministic: same data, same answer
    assert linear_probe(x[:300], labels[:300], x[300:], labels[300:], 4) == linear_probe(
        x[:300], labels[:300], x[300:], labels[300:], 4
    )


def test_linear_probe_refuses_mismatched_inputs():
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        linear_probe(torch.zeros(4, 3), torch.zeros(4, dtype=torch.long), torch.zeros(2, 5), torch.zeros(2, dtype=torch.long), 2)
    with pytest.raises(ValueError, match="one class"):
        linear_probe(torch.zeros(4, 3), torch.zeros(3, dtype=torch.long), torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), 2)


def test_recorded_queries_are_each_layers_output_and_the_hooks_go_away():
    model = tiny_detector().eval()
    x = torch.randn(2, 12, 8)
    with torch.no_grad():
        with recorded_queries(model) as layers:
            model(x)
        # by hand: the decoder's layers one after the other
        features = rearrange(model.encoder(x), "b d t -> b t d")
        points, query = model.query_points(2), model.query_vectors.expand(2, -1, -1)
        for layer, recorded in zip(model.decoder.layers, layers, strict=True):
            out = layer(features, points, query)
            points, query = out.points, out.query
            torch.testing.assert_close(recorded, query)
        model(x)
    assert len(layers) == 3  # the second forward pass, outside the block, recorded nothing


def test_query_vectors_follow_the_last_layers_matching():
    model = tiny_detector().train()
    items = windows(6, seed=1)
    data = query_vectors(model, items, batch_size=4)
    assert model.training  # put back as it was
    n = sum(len(item["labels"]) for item in items)
    assert data.vectors.shape == (4, n, 16) and data.labels.shape == (n,) == data.queries.shape
    # row 0: the learnt initial vectors of the matched queries
    torch.testing.assert_close(data.vectors[0], model.query_vectors.detach()[data.queries])
    # the matched queries are match_batch's on the last layer, and the labels their gestures'
    batch = collate(items)
    with torch.no_grad():
        output = model.eval()(batch["features"])
    matches = match_batch(output.logits[-1], output.segments[-1], batch["targets"])
    torch.testing.assert_close(data.queries, torch.cat([pred for pred, _ in matches]))
    torch.testing.assert_close(data.labels, torch.cat([item["labels"][tgt] for item, (_, tgt) in zip(items, matches)]))
    # the batch size does not change the answer
    torch.testing.assert_close(query_vectors(model, items, batch_size=1).vectors, data.vectors)


def test_query_vectors_need_a_gesture():
    items = windows(2, seed=0)
    for item in items:
        item["segments"], item["labels"] = torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)
    with pytest.raises(ValueError, match="no ground-truth gesture"):
        query_vectors(tiny_detector(), items)


def test_probe_layers_reports_every_depth_and_the_majority_rate():
    model = tiny_detector()
    fit, test = windows(12, seed=2), windows(8, seed=3)
    result = probe_layers(model, fit, test)
    assert len(result.accuracy) == 4 and all(0 <= a <= 1 for a in result.accuracy)
    fit_labels = torch.cat([item["labels"] for item in fit])
    test_labels = torch.cat([item["labels"] for item in test])
    majority = torch.bincount(fit_labels, minlength=3).argmax()
    assert result.chance == pytest.approx((test_labels == majority).double().mean().item())
    assert (result.fit_size, result.test_size) == (len(fit_labels), len(test_labels))
    table = result.table()
    assert "initial vectors" in table and "after layer 2" in table and "chance" in table
