"""Checkpoints that survive a crash: atomic writes, ``weights_only`` loading, every RNG state.

A checkpoint is a plain dict (tensors, numbers, strings, lists and dicts only) so that
``torch.load(..., weights_only=True)`` can read it without unpickling arbitrary objects. It is written
to a hidden temporary file in the destination folder, flushed to disk, then renamed over the old one
with ``os.replace`` (atomic on POSIX and Windows): a run killed at any moment leaves either the previous
checkpoint or the new one under the final name, never a half-written file.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = 1  # bumped when the layout of the dict changes


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, unreadable, or made for another model."""


def _fsync_directory(folder: Path) -> None:
    """Make the rename itself durable (POSIX); directories cannot be opened this way on Windows."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _temporary_prefix(path: Path) -> str:
    return f".{path.name}."


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: temporary file in the same folder, fsync, ``os.replace``.

    Temporary files left by an earlier run that was killed mid-write are removed first; their hidden
    names (``.last.pt.<random>.tmp``) can never be mistaken for a checkpoint.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = _temporary_prefix(path)
    for stale in path.parent.glob(f"{prefix}*.tmp"):
        stale.unlink(missing_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)
    return path


def _reason(err: Exception) -> str:
    """The informative line of torch.load's error (not its advice to turn weights_only off)."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    return text.strip().splitlines()[0].split(". Please use")[0]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a truncated or foreign file: say which one and why
        raise CheckpointError(f"cannot read checkpoint {path}: {_reason(err)}") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an mgtutor checkpoint (format {FORMAT})")
    return state


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and (when in use) the current CUDA device's generator states, as plain
    types and tensors."""
    version, mt_state, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": [version, list(mt_state), gauss],
        "numpy": {
            "bit_generator": numpy_state["bit_generator"],
            "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
            "pos": int(numpy_state["state"]["pos"]),
            "has_gauss": int(numpy_state["has_gauss"]),
            "gauss": float(numpy_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()  # the current device: one per process under torchrun
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (the CUDA part only where CUDA is in use)."""
    version, mt_state, gauss = state["python"]
    random.setstate((version, tuple(mt_state), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": numpy_state["bit_generator"],
            "state": {"key": numpy_state["key"].numpy().astype(np.uint32), "pos": numpy_state["pos"]},
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"].cpu())
