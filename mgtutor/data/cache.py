"""The frame cache: each sequence decoded once into uint8 frames that training reads memory-mapped.

Layout of a cache folder (written by ``mgtutor prepare``)::

    cache.json         {"format": 1, "fps": 10.0, "short_side": 256}
    Sample0001.npy     uint8 (T, H, W, 3), T = windows.num_sampled(numFrames, fps of _data.csv, fps)
    ...

Each ``.npy`` is written through :func:`mgtutor.files.atomic_path` (a hidden temporary name, renamed
when complete), so a killed run never leaves a file that looks finished; a rerun skips finished
sequences and redoes the rest. Bad settings are refused before anything is written.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mgtutor.data.errors import DataError
from mgtutor.data.smg import SequenceInfo, load_root, sample_name
from mgtutor.data.video import check_length, count_frames, iter_frames, output_size, probe
from mgtutor.data.windows import check_frame_rate, num_sampled
from mgtutor.files import atomic_path, check_output_folder, write_atomic

CACHE_META = "cache.json"
CACHE_FORMAT = 1


def cache_path(cache: str | Path, sample: int) -> Path:
    return Path(cache) / f"{sample_name(sample)}.npy"


def _check_meta(cache: Path, fps: float, short_side: int) -> None:
    """Refuse a cache made with other settings (its frames would be silently wrong for this run)."""
    meta = cache / CACHE_META
    if not meta.exists():
        return
    try:
        found = json.loads(meta.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(meta, f"cannot read the cache's settings ({err}); delete the cache folder and rerun mgtutor prepare") from None
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
    with atomic_path(path) as tmp:
        frames = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(total, height, width, 3))
        written = 0
        for k, image in iter_frames(seq.video, fps, seq.fps, size=(width, height), stop=total):
            frames[k] = image
            written = k + 1
            if bar is not None:
                bar.update()
        if written < total:  # the video ends early: the one length rule decides, then the last frame repeats
            del frames
            check_length(seq.video, count_frames(seq.video), seq.num_frames, seq.fps)
            if written == 0:
                raise DataError(seq.video, "no frame could be decoded; corrupt?")
            frames = np.load(tmp, mmap_mode="r+")
            frames[written:] = frames[written - 1]
            if bar is not None:
                bar.update(total - written)
        frames.flush()
        del frames


MAX_SHORT_SIDE = 4096


def check_short_side(short_side: Any, name: str = "short_side") -> int:
    """``short_side`` as an int, or ValueError naming ``name`` unless it is a whole number of pixels from
    1 to :data:`MAX_SHORT_SIDE` (0 once made 1x1 frames)."""
    if isinstance(short_side, bool) or not isinstance(short_side, (int, np.integer)) or not 1 <= short_side <= MAX_SHORT_SIDE:
        raise ValueError(f"{name} must be a whole number of pixels from 1 to {MAX_SHORT_SIDE}, got {short_side!r}")
    return int(short_side)


def check_settings(fps: float, short_side: int) -> tuple[float, int]:
    """``(fps, short_side)`` of a cache, or ValueError naming the bad one (:func:`check_frame_rate`,
    :func:`check_short_side`)."""
    return check_frame_rate(fps, "fps"), check_short_side(short_side)


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
    after an interruption. Bad settings (:func:`check_settings`), an ``out`` that is a file, a cache made
    with other settings and unreadable label or data files are refused before anything is written.
    """
    fps, short_side = check_settings(fps, short_side)
    out = check_output_folder(out, "the frame cache")
    sequences = load_root(root, subjects)
    _check_meta(out, fps, short_side)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / CACHE_META).exists():
        write_atomic(out / CACHE_META, json.dumps({"format": CACHE_FORMAT, "fps": fps, "short_side": short_side}) + "\n")
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
