"""Checkpoints: weights_only round trip, RNG states, and atomic writes under a crash."""

from __future__ import annotations

import fractions
import os
import random
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from mgtutor.train.checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state


def sample_state(value: float) -> dict:
    return {
        "format": 1,
        "model": {"weight": torch.full((3, 4), value)},
        "epoch": int(value),
        "config": {"train": {"lr": 1e-4, "out": "runs/x"}},
        "rng": [rng_state()],
        "metrics": {"last": {"epoch": 1, "loss/total": 0.5}, "best": None},
    }


def draws():
    return random.random(), np.random.rand(), torch.rand(2).tolist(), np.random.randn()


def test_round_trip_loads_with_weights_only(tmp_path):
    path = save_checkpoint(sample_state(2.0), tmp_path / "last.pt")
    state = load_checkpoint(path)
    assert torch.equal(state["model"]["weight"], torch.full((3, 4), 2.0))
    assert state["config"] == {"train": {"lr": 1e-4, "out": "runs/x"}} and state["metrics"]["best"] is None
    assert torch.load(path, weights_only=True)["epoch"] == 2  # plain torch can read it safely too
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_rng_state_restores_every_generator(tmp_path):
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    np.random.randn()  # leave a cached Gaussian in NumPy's legacy state
    path = save_checkpoint({"format": 1, "rng": rng_state()}, tmp_path / "rng.pt")
    expected = draws()
    random.seed(7), np.random.seed(7), torch.manual_seed(7)
    set_rng_state(load_checkpoint(path)["rng"])
    assert draws() == expected


def test_crash_while_writing_keeps_the_old_checkpoint(tmp_path, monkeypatch):
    path = save_checkpoint(sample_state(1.0), tmp_path / "last.pt")
    old = path.read_bytes()
    real_save = torch.save

    def crash_half_way(obj, target):
        real_save(obj, target)
        os.truncate(target, 100)  # half a file on disk, then the crash
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_half_way)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(sample_state(5.0), path)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # the temporary file is gone
    assert load_checkpoint(path)["epoch"] == 1


def test_killed_process_leaves_no_partial_file_under_the_final_name(tmp_path):
    path = save_checkpoint(sample_state(1.0), tmp_path / "last.pt")
    old = path.read_bytes()
    # A process killed (SIGKILL: no cleanup at all) after writing the new file, just before the rename.
    script = textwrap.dedent(
        f"""
        import os, signal, torch
        from mgtutor.train import checkpoint
        os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
        checkpoint.save_checkpoint({{"format": 1, "model": {{"weight": torch.zeros(1000)}}}}, {str(path)!r})
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert result.returncode == -9, result.stderr.decode()
    leftovers = sorted(p.name for p in tmp_path.iterdir() if p.name != "last.pt")
    assert len(leftovers) == 1 and leftovers[0].startswith(".last.pt.") and leftovers[0].endswith(".tmp")
    assert path.read_bytes() == old and load_checkpoint(path)["epoch"] == 1
    save_checkpoint(sample_state(3.0), path)  # the next save clears the debris
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"] and load_checkpoint(path)["epoch"] == 3


def test_unreadable_or_foreign_files_are_refused(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at .*missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 not a whole zip")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*cut.pt"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an mgtutor checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


def test_objects_that_are_not_plain_types_are_refused_on_load(tmp_path):
    path = tmp_path / "arbitrary.pt"
    torch.save({"format": 1, "payload": fractions.Fraction(1, 3)}, path)  # any class but the allowed ones
    with pytest.raises(CheckpointError, match=r"(?s)cannot read checkpoint .*arbitrary.pt.*Fraction"):
        load_checkpoint(path)


class _RunsCommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_refused_checkpoint_is_explained_by_the_global_it_asks_for(tmp_path):
    """torch 2.13 words this refusal without "WeightsUnpickler error:": its advice to load with
    weights_only=False (the one thing not to do) must not reach the user, the blocked global must."""
    path = tmp_path / "evil.pt"
    torch.save({"format": 1, "x": _RunsCommand(tmp_path / "ran")}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert f"cannot read checkpoint {path}: it asks for the Python global '{os.system.__module__}.system'" in message
    assert "weights_only" not in message and "\n" not in message and not (tmp_path / "ran").exists()
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty.pt: the file is empty or ends too early"):
        load_checkpoint(tmp_path / "empty.pt")
