"""Checkpoints that survive a crash: atomic writes, ``weights_only`` loading, every RNG state.

A checkpoint is a plain dict (tensors, numbers, strings, lists and dicts only) so that
``torch.load(..., weights_only=True)`` can read it without unpickling arbitrary objects. It is written
through :func:`mgtutor.files.atomic_path` (a hidden temporary file in the destination folder, flushed to
disk, renamed over the old one): a run killed at any moment leaves either the previous checkpoint or the
new one under the final name, never a half-written file.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mgtutor.files import TorchFileError, atomic_path, load_torch_file

FORMAT = 1  # bumped when the layout of the dict changes


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, unreadable, or made for another model."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (:func:`mgtutor.files.atomic_path`: a hidden temporary file
    ``.last.pt.<random>.tmp`` in the same folder, fsync, ``os.replace``); returns ``path``."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` with ``weights_only=True``.

    Raises CheckpointError naming the file and why it cannot be used: missing, empty, truncated, a
    Python global it asks for (refused without running anything), or not an mgtutor checkpoint.
    """
    try:
        state = load_torch_file(path, map_location, what="checkpoint")
    except TorchFileError as err:
        raise CheckpointError(str(err)) from None
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
