"""The training engine: resume equality, the NaN stop, evaluation and best.pt, the loss going down.

The engine is exercised with small stand-ins (a linear "detector" with dropout, a criterion with the
contract's interface, a dataset whose augmentation draws from the RNG) so each run takes well under a
second; test_engine_end_to_end.py trains the real detector on a real synthetic set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math

import pytest
import torch
from einops import rearrange, reduce
from torch import nn
from torch.utils.data import Dataset

from mgtutor.config import Config, ConfigError, DataConfig, TrainConfig
from mgtutor.train.checkpoint import CheckpointError, load_checkpoint
from mgtutor.train.engine import LAST, LOG, NonFiniteLossError, Trainer, build_optimizer
from mgtutor.train.log import append_record, read_log

FEATURES, STEPS, QUERIES, CLASSES = 6, 8, 3, 4


@dataclasses.dataclass
class TinyOutput:
    logits: torch.Tensor  # (L, b, q, k + 1)
    segments: torch.Tensor  # (L, b, q, 2)


class TinyDetector(nn.Module):
    """Features (b, FEATURES, STEPS) -> per-query logits and segments, with dropout and an encoder group."""

    def __init__(self):
        super().__init__()
        self.encoder = nn.Linear(FEATURES, 16)
        self.norm = nn.LayerNorm(16)
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(16, QUERIES * (CLASSES + 1 + 2))

    def forward(self, x):
        h = self.dropout(self.norm(self.encoder(reduce(x, "b d t -> b d", "mean"))))
        out = rearrange(self.head(h), "b (q o) -> 1 b q o", q=QUERIES)
        return TinyOutput(logits=out[..., : CLASSES + 1], segments=out[..., CLASSES + 1 :].sigmoid().sort(-1).values)

    def param_groups(self, lr, encoder_lr_scale):
        no_decay = [p for n, p in self.named_parameters() if n.startswith("norm.")]
        rest = [p for n, p in self.named_parameters() if not n.startswith(("norm.", "encoder."))]
        return [
            {"params": list(self.encoder.parameters()), "lr": lr * encoder_lr_scale},
            {"params": no_decay, "weight_decay": 0.0},
            {"params": rest},
        ]


class TinyCriterion(nn.Module):
    """Query i predicts ground truth i: cross-entropy (the rest "no object") plus L1 on the segments."""

    def forward(self, output, targets):
        class_loss, l1_loss = 0.0, 0.0
        for b, target in enumerate(targets):
            g = len(target["labels"])
            wanted = torch.full((QUERIES,), CLASSES, dtype=torch.long)
            wanted[:g] = target["labels"]
            class_loss = class_loss + nn.functional.cross_entropy(output.logits[-1, b], wanted)
            l1_loss = l1_loss + (output.segments[-1, b, :g] - target["segments"]).abs().mean()
        class_loss, l1_loss = class_loss / len(targets), l1_loss / len(targets)
        return {"total": class_loss + 5 * l1_loss, "class": class_loss, "l1": l1_loss}


class TinyWindows(Dataset):
    """Windows whose class is readable from the features; augmentation noise drawn from torch's RNG."""

    def __init__(self, n=12, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, CLASSES, (n, 2), generator=g)
        self.segments = torch.rand(n, 2, 2, generator=g).sort(-1).values
        self.base = torch.randn(n, FEATURES, STEPS, generator=g)
        self.base[torch.arange(n), self.labels[:, 0]] += 2.0

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        features = self.base[i] + 0.1 * torch.randn(FEATURES, STEPS)
        meta = {"sequence": i, "start": 0, "window": STEPS * 4, "fps": 10.0, "source_fps": 30.0, "num_frames": 32}
        return {"features": features, "segments": self.segments[i], "labels": self.labels[i], "meta": meta}


def tiny_collate(items):
    return {
        "features": torch.stack([item["features"] for item in items]),
        "segments": [item["segments"] for item in items],
        "labels": [item["labels"] for item in items],
        "meta": [item["meta"] for item in items],
    }


def tiny_config(out, num_workers=0, **train) -> Config:
    values = {"epochs": 3, "lr": 3e-3, "lr_step": 2, "batch_size": 2, "clip_grad": 1.0, "out": str(out)} | train
    return Config(data=DataConfig(num_workers=num_workers), train=TrainConfig(**values))


def make_trainer(config, criterion=None, evaluate=None, init_seed=0):
    """A trainer of the stand-ins whose ``steps`` list collects every step's losses."""
    torch.manual_seed(init_seed)
    model = TinyDetector()
    steps = []
    trainer = Trainer(
        config,
        model,
        criterion or TinyCriterion(),
        TinyWindows(),
        collate_fn=tiny_collate,
        evaluate=evaluate,
        progress=False,
        on_step=lambda step, losses: steps.append((step, losses)),
    )
    trainer.steps = steps
    return trainer


def without_time(records):
    return [{k: v for k, v in r.items() if k != "time"} for r in records]


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_reproduces_the_uninterrupted_run(tmp_path, num_workers):
    straight = make_trainer(tiny_config(tmp_path / "straight", num_workers, epochs=3))
    straight.fit()

    first = make_trainer(tiny_config(tmp_path / "split", num_workers, epochs=2))
    first.fit()
    assert load_checkpoint(tmp_path / "split" / LAST)["epoch"] == 2
    # A new process: other initial weights and RNG state, which the checkpoint must override.
    resumed = make_trainer(tiny_config(tmp_path / "split", num_workers, epochs=3), init_seed=123)
    torch.manual_seed(999)
    resumed.resume()
    resumed.fit()

    steps_per_epoch = math.ceil(len(TinyWindows()) / 2)
    assert len(straight.steps) == 3 * steps_per_epoch
    assert first.steps == straight.steps[: 2 * steps_per_epoch]
    assert resumed.steps == straight.steps[2 * steps_per_epoch :]  # exact float equality, every term
    for (name, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert without_time(read_log(tmp_path / "split" / LOG)) == without_time(read_log(tmp_path / "straight" / LOG))
    assert resumed.global_step == straight.global_step == 3 * steps_per_epoch


def test_data_order_depends_on_seed_and_epoch_only(tmp_path):
    def order(trainer, epoch):
        trainer.sampler.set_epoch(epoch)
        return list(trainer.sampler)

    a, b = make_trainer(tiny_config(tmp_path / "a")), make_trainer(tiny_config(tmp_path / "b"), init_seed=5)
    torch.manual_seed(42)  # the global RNG has no say
    assert order(a, 1) == order(b, 1)
    assert order(a, 0) != order(a, 1)
    c = make_trainer(tiny_config(tmp_path / "c", seed=1))
    assert order(c, 1) != order(a, 1)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    class NaNAtStep(TinyCriterion):
        calls = 0

        def forward(self, output, targets):
            losses = super().forward(output, targets)
            NaNAtStep.calls += 1
            if NaNAtStep.calls == 8:  # the second step of epoch 2 (6 steps an epoch)
                losses["l1"] = losses["l1"] * float("nan")
                losses["total"] = losses["class"] + losses["l1"]
            return losses

    trainer = make_trainer(tiny_config(tmp_path), criterion=NaNAtStep())
    trainer.train_one_epoch()
    last = tmp_path / LAST
    before = digest(last)
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(NonFiniteLossError) as info:
        trainer.fit()
    message = str(info.value)
    assert "step 8 (epoch 2)" in message and "l1=nan" in message and "total=nan" in message
    assert "class=" not in message  # only the non-finite terms are named
    assert digest(last) == before and load_checkpoint(last)["epoch"] == 1
    assert [r["epoch"] for r in read_log(tmp_path / LOG)] == [1]
    # the failing step did not touch the weights (the step before it did: epoch 2, step 7)
    assert trainer.global_step == 7
    assert not torch.equal(trainer.model.head.weight, weights["head.weight"])
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_evaluation_every_n_epochs_and_best_checkpoint(tmp_path):
    calls = []
    f1_by_epoch = {2: 0.5, 4: 0.7, 5: 0.6}

    def evaluate(model, epoch):
        assert not model.training and not torch.is_grad_enabled()
        calls.append(epoch)
        return {"f1": f1_by_epoch[epoch], "map": 0.1}

    trainer = make_trainer(tiny_config(tmp_path, epochs=5, eval_every=2), evaluate=evaluate)
    history = trainer.fit()
    assert calls == [2, 4, 5]  # every 2 epochs, and after the last
    assert trainer.model.training
    assert [r.get("eval/f1") for r in history] == [None, 0.5, None, 0.7, 0.6]
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["epoch"] == 4 and best["metrics"]["best"]["eval/f1"] == 0.7
    assert "optimizer" not in best
    last = load_checkpoint(tmp_path / LAST)
    assert last["metrics"]["last"]["epoch"] == 5 and last["metrics"]["best"]["epoch"] == 4


def test_learning_rate_schedule_groups_and_weight_decay(tmp_path):
    trainer = make_trainer(tiny_config(tmp_path, epochs=5, lr=1e-3, lr_step=2, weight_decay=0.05))
    encoder, norms, rest = trainer.optimizer.param_groups
    assert encoder["lr"] == pytest.approx(1e-4) and rest["lr"] == pytest.approx(1e-3)
    assert norms["weight_decay"] == 0.0 and rest["weight_decay"] == encoder["weight_decay"] == 0.05
    history = trainer.fit()
    assert [r["lr"] for r in history] == pytest.approx([1e-3, 1e-3, 5e-4, 5e-4, 2.5e-4])


def test_plain_module_trains_all_parameters_in_one_group():
    model = nn.Linear(3, 2)
    optimizer = build_optimizer(model, Config(train=TrainConfig(lr=2e-3, weight_decay=0.01)))
    (group,) = optimizer.param_groups
    assert len(group["params"]) == 2 and group["lr"] == 2e-3 and group["weight_decay"] == 0.01


def test_gradient_clipping_bounds_the_update(tmp_path, monkeypatch):
    trainer = make_trainer(tiny_config(tmp_path, clip_grad=1e-3))
    norms = []
    clip = torch.nn.utils.clip_grad_norm_

    def spy(parameters, max_norm):
        parameters = list(parameters)
        norms.append(clip(parameters, max_norm).item())  # the norm before clipping
        norms.append(torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in parameters])).item())

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    trainer.train_step(next(iter(trainer.loader)))
    before, after = norms
    assert before > 1e-2 and after == pytest.approx(1e-3, rel=1e-3)


def test_loss_decreases_and_max_steps_stops_early(tmp_path):
    trainer = make_trainer(tiny_config(tmp_path / "long", epochs=8, lr=1e-2, lr_step=8))
    history = trainer.fit()
    assert history[-1]["loss/total"] < 0.7 * history[0]["loss/total"]
    assert {"loss/total", "loss/class", "loss/l1", "lr", "time", "steps"} <= set(history[0])

    short = make_trainer(tiny_config(tmp_path / "short", epochs=8, max_steps=4))
    history = short.fit()
    assert short.global_step == 4 and len(history) == 1 and history[0]["steps"] == 4
    assert load_checkpoint(tmp_path / "short" / LAST)["global_step"] == 4


def test_resume_trims_a_log_line_without_checkpoint(tmp_path):
    trainer = make_trainer(tiny_config(tmp_path, epochs=1))
    trainer.fit()
    append_record(tmp_path / LOG, {"epoch": 2, "loss/total": 1.0, "lr": 1.0})  # killed before last.pt
    resumed = make_trainer(tiny_config(tmp_path, epochs=2))
    resumed.resume()
    assert [r["loss/total"] for r in read_log(tmp_path / LOG)][-1] == 1.0  # nothing is written until an epoch ends
    resumed.fit()
    log = read_log(tmp_path / LOG)
    assert [r["epoch"] for r in log] == [1, 2] and log[1]["loss/total"] != 1.0 and log == resumed.history


def test_resume_refuses_another_model(tmp_path):
    trainer = make_trainer(tiny_config(tmp_path, epochs=1))
    trainer.fit()
    state = load_checkpoint(tmp_path / LAST)
    state["config"]["model"]["layers"] = 2
    with pytest.raises(CheckpointError, match=r"model\.layers: 2 in the checkpoint, 4 now"):
        make_trainer(tiny_config(tmp_path)).load_state_dict(state)


def test_an_empty_training_set_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no training windows"):
        Trainer(tiny_config(tmp_path), TinyDetector(), TinyCriterion(), [], collate_fn=tiny_collate)


def test_losses_see_float32_even_when_the_model_returns_bfloat16(tmp_path):
    class HalfDetector(TinyDetector):
        def forward(self, x):
            out = super().forward(x)
            return TinyOutput(logits=out.logits.bfloat16(), segments=out.segments.bfloat16())

    class Float32Only(TinyCriterion):
        def forward(self, output, targets):
            assert output.logits.dtype == output.segments.dtype == torch.float32
            return super().forward(output, targets)

    trainer = Trainer(tiny_config(tmp_path), HalfDetector(), Float32Only(), TinyWindows(), collate_fn=tiny_collate)
    assert math.isfinite(trainer.train_step(next(iter(trainer.loader)))["total"])


class BatchSizedCriterion(TinyCriterion):
    """TinyCriterion plus a term only batches of 2 windows have (as ``train.aux_layers: pointtad`` gives)."""

    def forward(self, output, targets):
        losses = super().forward(output, targets)
        if len(targets) == 2:
            losses["extra_1"] = losses["l1"] * 0 + 7.0
        return losses


def test_epoch_means_count_only_the_steps_that_had_the_term(tmp_path):
    trainer = make_trainer(tiny_config(tmp_path, epochs=1, batch_size=5), criterion=BatchSizedCriterion())
    # 12 windows in batches of 5: 5, 5, 2; only the last step has extra_1
    (record,) = trainer.fit()
    assert [len(losses) for _, losses in trainer.steps] == [3, 3, 4]
    assert record["loss/extra_1"] == pytest.approx(7.0)
    assert record["loss/total"] == pytest.approx(sum(losses["total"] for _, losses in trainer.steps) / 3)
