"""``mgtutor train``: configuration and checkpoint mistakes end with one clear line and status 2."""

from __future__ import annotations

import pytest

from mgtutor.cli import main
from mgtutor.train.checkpoint import save_checkpoint


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.hiden=3"], "unknown configuration key 'model.hiden'; did you mean 'model.hidden'?"),
        (["train.lr=-1"], "train.lr must be positive"),
        (["train.epochs=ten"], "train.epochs must be an integer, got 'ten'"),
        (["train.amp=fp8"], "train.amp must be 'bf16' or 'none'"),
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
