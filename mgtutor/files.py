"""Files a crash cannot tear, output paths checked before anything is written, and torch files that
cannot run code.

Writing. Every file whose torn copy would be worse than none (checkpoints, the training log when it is
rewritten, frame-cache arrays, synthetic videos, converted weights, prediction files, benchmark results)
is written through :func:`atomic_path`: the content goes to a hidden temporary file in the destination's
folder (``.NAME.<random>.tmp``), is flushed to disk, then renamed over ``NAME`` with ``os.replace``
(atomic on POSIX and Windows), and the folder is flushed so that the rename itself survives a power cut.
A run killed at any moment leaves either the old file or the new one under the final name, never part of
one; its leftover temporary file is hidden, cannot be mistaken for a result, and the next write of the
same file removes it.

Output paths. :func:`check_output_folder` and :func:`check_output_file` refuse, with the path named, an
output that cannot be what the caller writes (a file where a folder is expected, or the reverse), before
any work starts.

Reading. :func:`load_torch_file` reads a ``torch.save`` file with ``weights_only=True`` (only tensors and
plain Python values can be unpickled; nothing the file names is imported or called) and turns every way
it can fail into a :class:`TorchFileError` that says why, in particular which Python global a refused
file asked for, and never repeats torch's advice to load it with ``weights_only=False``.
"""

from __future__ import annotations

import glob
import os
import re
import secrets
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_directory(folder: Path) -> None:
    """Make a rename durable (POSIX); folders cannot be opened this way on Windows."""
    if os.name == "posix":
        _fsync_path(folder)


def temporary_prefix(path: str | Path) -> str:
    """The name every temporary file of ``path`` starts with (``.NAME.``); they all end in ``.tmp``."""
    return f".{Path(path).name}."


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; when the block ends, make it ``path``.

    The temporary file exists (empty) when the block starts, so a writer that opens a path may overwrite
    it. On normal exit it is flushed to disk and renamed over ``path``; on any exception it is removed
    and ``path`` is left as it was. Temporary files of ``path`` left by a killed run are removed first.
    """
    path = Path(path)
    check_output_file(path, "the file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = temporary_prefix(path)
    for stale in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f"{prefix}{secrets.token_hex(4)}.tmp")
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))  # the umask's permissions, as open() gives
    try:
        yield tmp
        _fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def write_atomic(path: str | Path, content: str | bytes) -> Path:
    """Write ``content`` (text as UTF-8, or bytes) to ``path`` through :func:`atomic_path`; returns ``path``."""
    with atomic_path(path) as tmp:
        if isinstance(content, str):
            tmp.write_text(content, encoding="utf-8")
        else:
            tmp.write_bytes(content)
    return Path(path)


def check_output_folder(path: str | Path, purpose: str) -> Path:
    """``path`` as a Path, unless it exists and is not a folder (NotADirectoryError naming it and
    ``purpose``, e.g. "the frame cache"). Nothing is created."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} exists and is not a folder: expected a folder for {purpose}")
    return path


def check_output_file(path: str | Path, purpose: str) -> Path:
    """``path`` as a Path, unless it is a folder (IsADirectoryError naming it and ``purpose``)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder: expected the path of {purpose}")
    return path


class TorchFileError(ValueError):
    """A ``torch.save`` file that cannot be read safely: missing, empty, truncated, or refused."""


# torch names a refused global as "GLOBAL posix.system" (a blocked module) or "GLOBAL fractions.Fraction" (not allowed)
_BLOCKED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


def torch_load_reason(err: BaseException) -> str:
    """Why ``torch.load(..., weights_only=True)`` failed, in one line: the blocked global when the file
    names one, else the informative part of the error; never torch's advice to turn ``weights_only`` off."""
    text = str(err)
    blocked = _BLOCKED_GLOBAL.search(text)
    if blocked:
        return (
            f"it asks for the Python global '{blocked.group(1)}', which a file of tensors and plain values never "
            "needs; refused without importing or running anything"
        )
    if isinstance(err, EOFError) or not text.strip():
        return "the file is empty or ends too early"
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # torch's own sentences about weights_only, its documentation and filing issues are advice, not a reason
    useful = [line for line in lines if not re.search(r"weights_only|torch\.load|file an issue|documentation", line)]
    reason = useful[0] if useful else type(err).__name__
    if "central directory" in reason or "zip archive" in reason:
        return f"the file is truncated or corrupt ({reason.split('. ')[0]})"
    if reason.startswith("Unsupported operand"):
        return f"not a file written by torch.save ({reason[0].lower()}{reason[1:]} in its pickle)"
    return reason.split(". Please use")[0]


def load_torch_file(path: str | Path, map_location: Any = "cpu", what: str = "torch file") -> Any:
    """``torch.load(path, weights_only=True)``, with every failure a :class:`TorchFileError` naming
    ``path`` (described as ``what``, e.g. "checkpoint") and the reason (:func:`torch_load_reason`)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise TorchFileError(f"no {what} at {path}" + (" (it is a folder)" if path.is_dir() else ""))
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols; the error below says enough
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # a truncated, foreign or hostile file: say which one and why
        raise TorchFileError(f"cannot read {what} {path}: {torch_load_reason(err)}") from None
