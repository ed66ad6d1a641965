"""``mgtutor train`` end to end with the real pieces: a tiny synthetic SMG set (frames cached once),
the small CPU encoder or precomputed features, the detector with a Mamba-MHSA block, PointTAD's losses.

Checks that 1 epoch + ``--resume`` for 1 more equals 2 straight epochs bit for bit (logged losses and
final weights: augmentation, dropout and data order all come back, with mgtutor's jitter in the main
process and with PointTAD's augmentation drawn in a loader worker), that the loss goes down, and that
a non-finite loss exits with status 1 keeping the last good checkpoint.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml

from mgtutor.cli import main
from mgtutor.config import load_config
from mgtutor.data.cache import prepare_cache
from mgtutor.data.dataset import WindowDataset, features_length, features_path
from mgtutor.data.smg import load_root
from mgtutor.data.synthetic import write_synthetic
from mgtutor.train.checkpoint import load_checkpoint
from mgtutor.train.distributed import DistributedContext
from mgtutor.train.engine import build_trainer
from mgtutor.train.losses import SetCriterion
from mgtutor.train.log import read_log

pytestmark = pytest.mark.slow

SIZE = 40


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tiny synthetic SMG root, its frame cache, and per-sequence features (random: the features
    encoder only projects them; the labels and windows are the set's real ones)."""
    folder = tmp_path_factory.mktemp("e2e")
    root = write_synthetic(folder / "smg", sequences=3, seconds=12, size=SIZE, seed=0, workers=1)
    prepare_cache(root, folder / "cache", fps=10.0, short_side=SIZE, progress=False)
    generator = np.random.default_rng(0)
    (folder / "features").mkdir()
    for seq in load_root(root):
        steps = features_length(seq.num_frames, seq.fps, 10.0)
        features = generator.standard_normal((16, steps), dtype=np.float32)
        np.save(features_path(folder / "features", seq.sample), features)
    return {"root": str(root), "cache": str(folder / "cache"), "features": str(folder / "features"), "folder": folder}


def write_config(data, name, encoder, data_values=None, **train):
    model = {"hidden": 32, "queries": 8, "points": 9, "layers": 2, "heads": 4, "ffn": 64, "mix_dim": 8}
    model["mamba_blocks"] = 1
    values = {
        "data": {
            "root": data["root"], "cache": data["cache"], "features": data["features"], "train_subjects": [1, 2],
            "test_subjects": [3], "window": 32, "short_side": SIZE, "crop": 32,
        } | (data_values or {}),
        "model": model | {"encoder": encoder, "feature_dim": 16},
        "train": {"batch_size": 2, "lr": 2e-3, "lr_step": 2} | train,
    }  # fmt: skip
    path = data["folder"] / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def run(config_file, out, *extra):
    return main(["train", "--config", str(config_file), "--no-progress", "--set", f"train.out={out}", *extra])


def without_time(records):
    return [{k: v for k, v in r.items() if k != "time"} for r in records]


AUGMENTATIONS = {
    "jitter": {"augment": "jitter", "jitter": 0.2},
    "pointtad, flip, one worker": {"augment": "pointtad", "flip": True, "num_workers": 1},
}


@pytest.mark.parametrize("augmentation", list(AUGMENTATIONS))
def test_resume_on_clips_equals_the_uninterrupted_run(data, tmp_path, augmentation):
    # Clips: random crops and augmentation parameters (drawn where the windows are read, applied to the
    # uint8 batch by the trainer), dropout, the order of the windows all draw random numbers.
    config_file = write_config(data, "clips", "small", AUGMENTATIONS[augmentation], epochs=2)
    # (No evaluation: it runs after a run's last epoch, which is epoch 1 for the first half.)
    assert run(config_file, tmp_path / "straight", "--no-eval") == 0
    assert run(config_file, tmp_path / "split", "--no-eval", "--set", "train.epochs=1") == 0
    assert run(config_file, tmp_path / "split", "--no-eval", "--resume") == 0

    straight, split = read_log(tmp_path / "straight" / "log.jsonl"), read_log(tmp_path / "split" / "log.jsonl")
    assert [r["epoch"] for r in straight] == [1, 2]
    assert without_time(split) == without_time(straight)  # every loss term's epoch mean, exactly
    a, b = load_checkpoint(tmp_path / "straight" / "last.pt"), load_checkpoint(tmp_path / "split" / "last.pt")
    assert straight[0]["steps"] >= 3 and a["global_step"] == b["global_step"] == 2 * straight[0]["steps"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    assert (tmp_path / "split" / "training_curve.png").stat().st_size > 10_000


def test_training_lowers_the_loss_and_evaluates(data, tmp_path):
    config_file = write_config(data, "features", "features", epochs=5)
    assert run(config_file, tmp_path, "--set", "train.eval_every=2") == 0
    log = read_log(tmp_path / "log.jsonl")
    # the test subject's F1 and mAP every 2 epochs and after the last; best.pt holds the best F1
    assert [r["epoch"] for r in log if "eval/f1" in r] == [2, 4, 5]
    assert all(0 <= r["eval/f1"] <= 1 and 0 <= r["eval/map"] <= 1 for r in log if "eval/f1" in r)
    best = load_checkpoint(tmp_path / "best.pt")
    assert best["metrics"]["best"]["eval/f1"] == max(r["eval/f1"] for r in log if "eval/f1" in r)
    assert log[-1]["loss/total"] < 0.9 * log[0]["loss/total"]
    assert log[-1]["loss/class"] < log[0]["loss/class"] and log[-1]["loss/dense"] < log[0]["loss/dense"]
    assert [r["lr"] for r in log] == pytest.approx([2e-3, 2e-3, 1e-3, 1e-3, 5e-4])
    assert load_config(tmp_path / "config.yaml").model.mamba_blocks == 1
    assert (tmp_path / "training_curve.png").stat().st_size > 10_000


def test_non_finite_loss_exits_1_and_keeps_the_last_good_checkpoint(data, tmp_path, monkeypatch, capsys):
    config_file = write_config(data, "nan", "features", epochs=3)
    config = load_config(config_file)
    steps_per_epoch = math.ceil(len(WindowDataset.from_config(config, "train")) / config.train.batch_size)
    poisoned_call = steps_per_epoch + 2  # the second step of epoch 2
    calls = []
    forward = SetCriterion.forward

    def poisoned(self, output, targets):
        losses = forward(self, output, targets)
        calls.append(1)
        if len(calls) == poisoned_call:
            losses["iou"] = losses["iou"] + float("inf")
            losses["total"] = losses["total"] + losses["iou"]
        return losses

    monkeypatch.setattr(SetCriterion, "forward", poisoned)
    out = tmp_path / "nan"
    assert run(config_file, out, "--no-eval") == 1
    err = capsys.readouterr().err
    assert f"non-finite loss at step {poisoned_call} (epoch 2): iou=inf, total=inf" in err
    assert "Traceback" not in err
    assert load_checkpoint(out / "last.pt")["epoch"] == 1
    assert [r["epoch"] for r in read_log(out / "log.jsonl")] == [1]


def test_a_resume_applies_and_records_a_changed_value_or_refuses_it_by_key(data, tmp_path, capsys):
    config_file = write_config(data, "resume", "features", epochs=1)
    assert run(config_file, tmp_path, "--no-eval") == 0
    files = {name: (tmp_path / name).read_bytes() for name in ("config.yaml", "last.pt", "log.jsonl")}
    capsys.readouterr()
    # the learning rate lives in the checkpoint's optimiser and schedule: a change is refused, not ignored
    assert run(config_file, tmp_path, "--no-eval", "--resume", "--set", "train.lr=0.5", "--set", "train.epochs=2") == 2
    err = capsys.readouterr().err
    assert "train.lr: 0.002 in the checkpoint, 0.5 now" in err and len(err.strip().splitlines()) == 1
    assert {name: (tmp_path / name).read_bytes() for name in files} == files  # nothing written
    # a resume that fails later (no data) leaves config.yaml, the checkpoint and the log as they were
    assert run(config_file, tmp_path, "--no-eval", "--resume", "--set", "train.epochs=2", "--set", f"data.root={tmp_path / 'gone'}") == 2
    assert "gone: not a folder" in capsys.readouterr().err
    assert {name: (tmp_path / name).read_bytes() for name in files} == files
    # values a resumed run can take: applied from here on and recorded
    assert run(config_file, tmp_path, "--no-eval", "--resume", "--set", "train.epochs=2", "--set", "train.clip_grad=0.5") == 0
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 2 and state["config"]["train"]["epochs"] == 2 and state["config"]["train"]["clip_grad"] == 0.5
    assert load_config(tmp_path / "config.yaml").train.clip_grad == 0.5
    assert [r["epoch"] for r in read_log(tmp_path / "log.jsonl")] == [1, 2]


@pytest.mark.cuda
def test_cuda_runs_bf16_autocast_with_tf32_and_resumes(data, tmp_path):
    config = load_config(write_config(data, "cuda", "features", epochs=2), [f"train.out={tmp_path}", "train.epochs=1"])
    steps = []
    cuda = DistributedContext(device=torch.device("cuda"))
    trainer = build_trainer(config, context=cuda, progress=False, on_step=lambda *s: steps.append(s))
    dtypes = []
    trainer.model.register_forward_hook(lambda module, inputs, output: dtypes.append(output.logits.dtype))
    trainer.fit()
    assert set(dtypes) == {torch.bfloat16}  # the forward pass ran under bf16 autocast
    assert torch.backends.cuda.matmul.allow_tf32 and trainer.loader.pin_memory
    assert len(steps) == trainer.global_step and all(math.isfinite(losses["total"]) for _, losses in steps)
    state = load_checkpoint(tmp_path / "last.pt")
    assert "cuda" in state["rng"][0] and state["scaler"] == trainer.scaler.state_dict()

    config.train.epochs = 2
    resumed = build_trainer(config, context=cuda, progress=False)
    resumed.resume()
    resumed.fit()
    assert [r["epoch"] for r in read_log(tmp_path / "log.jsonl")] == [1, 2]
