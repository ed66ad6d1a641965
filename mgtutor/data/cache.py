"""The frame cache: each sequence decoded once into uint8 frames that training reads memory-mapped.

Layout of a cache folder (written by ``mgtutor prepare``)::

    cache.json         {"format": 1, "fps": 10.0, "short_side": 256}
    Sample0001.npy     uint8 (T, H, W, 3), T = windows.num_sampled(numFrames, fps of _data.csv, fps)
    ...

Each ``.npy`` is written under a temporary name (``.Sample0001.npy.partial``) and renamed when complete,
so a killed run never leaves a file that looks finished; a rerun skips finished sequences and redoes
the rest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mgtutor.data.errors import DataError
from mgtutor.data.smg import SequenceInfo, load_root, sample_name
from mgtutor.data.video import MAX_PAD_SECONDS, iter_frames, output_size, probe
from mgtutor.data.windows import num_sampled

CACHE_META = "cache.json"
CACHE_FORMAT = 1


def cache_path(cache: str | Path, sample: int) -> Path:
    return Path(cache) / f"{sample_name(sample)}.npy"


def _check_meta(cache: Path, fps: float, short_side: int) -> None:
    """Refuse a cache made with other settings (its frames would be silently wrong for this run)."""
    meta = cache / CACHE_META
    if not meta.exists():
        return
    found = json.loads(meta.read_text())
    wanted = {"format": CACHE_FORMAT, "fps": float(fps), "short_side": int(short_side)}
    if found != wanted:
        raise DataError(meta, f"this cache holds frames made with {found}, expected {wanted}; use another cache folder or matching settings")


def _is_finished(path: Path, shape: tuple[int, ...]) -> bool:
    if not path.exists():
        return False
    try:
        return np.load(path, mmap_mode="r").shape == shape
    except (ValueError, OSError):
        return False


def _write_sequence(seq: SequenceInfo, path: Path, fps: float, width: int, height: int, bar) -> None:
    total = num_sampled(seq.num_frames, seq.fps, fps)
    tmp = path.with_name(f".{path.name}.partial")
    frames = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(total, height, width, 3))
    written = 0
    for k, image in iter_frames(seq.video, fps, seq.fps, size=(width, height), stop=total):
        frames[k] = image
        written = k + 1
        if bar is not None:
            bar.update()
    missing = total - written
    if missing > max(1, round(MAX_PAD_SECONDS * fps)) or written == 0:
        del frames
        tmp.unlink()
        raise DataError(seq.video, f"video ends after {written} of {total} sampled frames (numFrames={seq.num_frames} in _data.csv); truncated?")
    frames[written:] = frames[written - 1]
    if bar is not None:
        bar.update(missing)
    frames.flush()
    del frames
    os.replace(tmp, path)


def prepare_cache(
    root: str | Path,
    out: str | Path,
    fps: float = 10.0,
    short_side: int = 256,
    subjects: Sequence[int] | None = None,
    progress: bool = True,
) -> list[Path]:
    """Decode every sequence of ``root`` (or of ``subjects``) once into ``out``; returns the ``.npy`` paths.

    Frames are resampled to ``fps`` and resized so their short side is ``short_side``. Finished
    sequences are skipped and leftover temporary files are overwritten, so the call can be repeated
    after an interruption.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_meta(out, fps, short_side)
    (out / CACHE_META).write_text(json.dumps({"format": CACHE_FORMAT, "fps": float(fps), "short_side": int(short_side)}) + "\n")
    sequences = load_root(root, subjects)
    todo, paths = [], []
    for seq in sequences:
        path = cache_path(out, seq.sample)
        paths.append(path)
        info = probe(seq.video)
        width, height = output_size(info.width, info.height, short_side)
        if not _is_finished(path, (num_sampled(seq.num_frames, seq.fps, fps), height, width, 3)):
            todo.append((seq, path, width, height))
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(num_sampled(s.num_frames, s.fps, fps) for s, *_ in todo), unit="frame", desc="prepare")
    try:
        for seq, path, width, height in todo:
            if bar is not None:
                bar.set_postfix_str(seq.name)
            _write_sequence(seq, path, fps, width, height, bar)
    finally:
        if bar is not None:
            bar.close()
    return paths


def open_cached(cache: str | Path, seq: SequenceInfo, fps: float, short_side: int) -> np.ndarray | None:
    """The cached frames of ``seq`` as a read-only memory map ``(T, H, W, 3)``, or None when the cache
    has no file for it. Raises DataError when the cache was made with other settings or is incomplete."""
    cache = Path(cache)
    path = cache_path(cache, seq.sample)
    if not path.exists():
        return None
    _check_meta(cache, fps, short_side)
    frames = np.load(path, mmap_mode="r")
    expected = num_sampled(seq.num_frames, seq.fps, fps)
    if frames.ndim != 4 or frames.shape[0] != expected or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise DataError(path, f"expected uint8 frames of shape ({expected}, H, W, 3), found {frames.dtype} {frames.shape}; rerun mgtutor prepare")
    return frames
