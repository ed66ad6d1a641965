"""``mgtutor train``: configuration and checkpoint mistakes end with one clear line and status 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from mgtutor.cli import main
from mgtutor.config import load_config
from mgtutor.train.checkpoint import save_checkpoint

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.hiden=3"], "unknown configuration key 'model.hiden'; did you mean 'model.hidden'?"),
        (["train.lr=-1"], "train.lr must be positive"),
        (["train.epochs=ten"], "train.epochs must be an integer, got 'ten'"),
        (["train.amp=fp8"], "train.amp must be 'bf16' or 'none'"),
        (["train.aux_layers=first"], "train.aux_layers must be 'all' or 'pointtad', got 'first'"),
        (["model.initial_points=random"], "model.initial_points must be 'middle' or 'spread', got 'random'"),
        (["trainepochs=3"], "must look like section.key"),
    ],
)
def test_bad_configuration_names_the_key(capsys, overrides, message):
    argv = ["train"] + [arg for value in overrides for arg in ("--set", value)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("mgtutor train: error: ") and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_missing_configuration_file(capsys, tmp_path):
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read configuration file" in capsys.readouterr().err


def test_resume_without_a_checkpoint_and_overwriting_one_are_refused(capsys, tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--set", f"train.out={out}", "--resume"]) == 2
    assert f"no checkpoint at {out / 'last.pt'} to resume from" in capsys.readouterr().err
    assert main(["train", "--set", f"train.out={out}", "--resume", str(tmp_path / "other.pt")]) == 2
    assert "other.pt" in capsys.readouterr().err

    save_checkpoint({"format": 1}, out / "last.pt")
    assert main(["train", "--set", f"train.out={out}"]) == 2
    assert "already holds a checkpoint" in capsys.readouterr().err
    assert not (out / "log.jsonl").exists()


def test_the_paper_configuration(capsys, tmp_path):
    cfg = load_config(REPO / "configs" / "smg_paper.yaml")
    assert (cfg.data.fps, cfg.data.window, cfg.data.train_step, cfg.data.test_step) == (10.0, 128, 32, 128)
    assert cfg.data.train_subjects == list(range(1, 36)) and cfg.data.test_subjects == list(range(36, 41))
    assert (cfg.model.encoder, cfg.model.encoder_weights) == ("i3d", "weights/i3d_kinetics400_rgb.safetensors")
    m = cfg.model
    assert (m.queries, m.points, m.layers, m.hidden, m.mamba_blocks, m.encoder_lr_scale) == (48, 30, 4, 512, 2, 0.1)
    t = cfg.train
    assert (t.lr, t.lr_step, t.lr_gamma, t.epochs, t.batch_size) == (1e-4, 10, 0.5, 50, 1)
    assert (t.amp, t.clip_grad, t.weight_decay) == ("bf16", 0.1, 1e-4)
    # data.root is a placeholder: left as it is, the run stops at once and says which folder is wrong
    assert main(["train", "--config", str(REPO / "configs" / "smg_paper.yaml"), "--set", f"train.out={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "/path/to/SMG: not a folder" in err and "Traceback" not in err
