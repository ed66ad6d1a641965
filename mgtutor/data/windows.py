"""Three clocks, one mapping between them, and the sliding windows that cut a sequence (docs/reference.md, section 3).

Every part of mgtutor that turns frame numbers into window coordinates or back (the dataset's targets,
evaluation, online prediction) calls the functions here and nothing else.

Glossary
- original frame ``n``: 0-based position of a frame in the decoded video, which runs at ``source_fps``.
  Label files' frame numbers are read as these positions and used as given. (Should a release count
  from 1, the shift is one source frame, a third of a sampled frame at 30 -> 10 fps.)
- sampled position ``k``: the video resampled to the target ``fps``. Sampled frame ``k`` shows the instant
  ``k / fps``, i.e. original frame ``floor(k * source_fps / fps)``. With ``r = fps / source_fps``, original
  frame ``n`` spans sampled positions ``[n r, (n + 1) r)``, so a gesture ``[s, e]`` (inclusive frames) spans
  ``[s r, (e + 1) r)``.
- window coordinate ``u``: a window of ``W`` sampled frames starting at ``w0`` covers positions
  ``[w0, w0 + W)`` and maps position ``x`` to ``u = (x - w0) / W``; a segment is ``(u_start, u_end)``.
- feature step ``j``: every encoder emits one feature step per :data:`FEATURE_STRIDE` sampled frames
  (step ``j`` summarises positions ``[4j, 4j + 4)``), so windows are a whole number of steps long and
  precomputed features are stored at that rate.

Going back, ``window_to_frames`` rounds ``x / r`` to the nearest frame, so frames -> window -> frames is
the identity for every gesture.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Float slack when flooring k * source_fps / fps: 29.97 fps gives products like 2.9999999999 for 3.
_EPS = 1e-6
FEATURE_STRIDE = 4  # sampled frames per feature step: the temporal stride of every encoder
# Frame rates a video or a sampling rate may have. Outside, the arithmetic of this module breaks down (an
# infinite or 1e-300 fps makes num_sampled loop for ever) and no camera films micro-gestures.
FRAME_RATE_RANGE = (1.0, 1000.0)


def check_frame_rate(fps: Any, name: str = "fps") -> float:
    """``fps`` as a float, or ValueError naming ``name`` unless it is a number within
    :data:`FRAME_RATE_RANGE` (finite: ``inf`` and ``nan`` are refused). The one rule for every frame rate
    mgtutor reads: ``_data.csv``, the configuration, the commands' options."""
    low, high = FRAME_RATE_RANGE
    try:
        value = float(fps)
    except (TypeError, ValueError):
        value = math.nan
    if not low <= value <= high:
        raise ValueError(f"{name} must be a frame rate from {low:g} to {high:g} frames a second, got {fps!r}")
    return value


def _check_rates(source_fps: float, fps: float) -> None:
    check_frame_rate(source_fps, "source_fps")
    check_frame_rate(fps, "fps")


def original_frame(k: Any, source_fps: float, fps: float) -> Any:
    """Original frame shown at sampled position ``k``: ``floor(k * source_fps / fps)``.

    ``k`` is an int or an integer array; the result has the same shape (an int for an int).
    Inverse: :func:`sampled_position` (``sampled_position(n) <= k < sampled_position(n + 1)``).
    """
    _check_rates(source_fps, fps)
    n = np.floor(np.asarray(k, dtype=np.float64) * source_fps / fps + _EPS).astype(np.int64)
    return int(n) if n.ndim == 0 else n


def sampled_position(n: Any, source_fps: float, fps: float) -> Any:
    """Sampled position where original frame ``n`` begins: ``n * fps / source_fps`` (a float).

    Original frame ``n`` covers ``[sampled_position(n), sampled_position(n + 1))``; the sampled frames
    that show it are the integers in that interval.
    """
    _check_rates(source_fps, fps)
    x = np.asarray(n, dtype=np.float64) * fps / source_fps
    return float(x) if x.ndim == 0 else x


def num_sampled(num_frames: int, source_fps: float, fps: float) -> int:
    """How many sampled frames a video of ``num_frames`` original frames yields (those ``k`` whose
    :func:`original_frame` is < ``num_frames``)."""
    if num_frames <= 0:
        return 0
    count = math.ceil(num_frames * fps / source_fps - _EPS)
    # settle float edge cases against original_frame itself, so both agree exactly
    while count > 0 and original_frame(count - 1, source_fps, fps) >= num_frames:
        count -= 1
    while original_frame(count, source_fps, fps) < num_frames:
        count += 1
    return count


def frames_to_window(frames: Any, window_start: int, window: int, source_fps: float, fps: float) -> np.ndarray:
    """Inclusive original-frame segments ``(g, 2)`` -> window coordinates ``(g, 2)`` float64.

    ``[s, e]`` -> ``((s r - w0) / W, ((e + 1) r - w0) / W)`` with ``r = fps / source_fps``. Values outside
    [0, 1] mean the gesture reaches outside the window.
    """
    frames = np.asarray(frames, dtype=np.float64)
    if frames.shape[-1:] != (2,):
        raise ValueError(f"frame segments must have shape (..., 2), got {frames.shape}")
    start = sampled_position(frames[..., 0], source_fps, fps)
    stop = sampled_position(frames[..., 1] + 1, source_fps, fps)
    return (np.stack([start, stop], axis=-1) - window_start) / window


def window_to_frames(
    segments: Any,
    window_start: int,
    window: int,
    source_fps: float,
    fps: float,
    num_frames: int | None = None,
) -> np.ndarray:
    """Window coordinates ``(g, 2)`` -> inclusive original-frame segments ``(g, 2)`` int64.

    The inverse of :func:`frames_to_window`: start ``round(x0 / r)``, end ``round(x1 / r) - 1`` with
    ``x = w0 + u W``; the end is kept >= the start, and with ``num_frames`` both are clipped to the video.
    """
    segments = np.asarray(segments, dtype=np.float64)
    if segments.shape[-1:] != (2,):
        raise ValueError(f"segments must have shape (..., 2), got {segments.shape}")
    _check_rates(source_fps, fps)
    position = window_start + segments * window
    frames = np.floor(position * source_fps / fps + 0.5).astype(np.int64)
    start, end = frames[..., 0], frames[..., 1] - 1
    if num_frames is not None:
        start = np.clip(start, 0, num_frames - 1)
        end = np.clip(end, 0, num_frames - 1)
    end = np.maximum(end, start)
    return np.stack([start, end], axis=-1)


def window_starts(length: int, window: int, stride: int, end_aligned: bool = True, align: int = 1) -> list[int]:
    """First sampled positions of the windows over a sequence of ``length`` sampled frames.

    Windows start at 0, stride, 2 stride, ... while they fit; with ``end_aligned`` one more window ends
    exactly at the sequence's end when the stride does not land there. A sequence shorter than the
    window gets one window at 0 (its clip is padded by the dataset). ``align`` makes every start a
    multiple of it (precomputed features have one step per 4 sampled frames): the end-aligned start is
    then rounded up, so that window may reach up to ``align - 1`` frames past the end.
    """
    if window <= 0 or stride <= 0 or align <= 0:
        raise ValueError(f"window, stride and align must be positive, got window={window}, stride={stride}, align={align}")
    if stride % align:
        raise ValueError(f"stride {stride} must be a multiple of align {align}")
    if length <= window:
        return [0]
    starts = list(range(0, length - window + 1, stride))
    last = -(-(length - window) // align) * align
    if end_aligned and starts[-1] != last:
        starts.append(last)
    return starts


def gestures_in_window(
    gestures: Sequence[Any], window_start: int, window: int, source_fps: float, fps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The gestures lying fully inside one window.

    ``gestures``: items with ``label`` (1-based), ``start`` and ``end`` (inclusive original frames).
    Returns ``(indices (g,), segments (g, 2) float32 in [0, 1], labels (g,) int64 0-based)``.
    """
    if not gestures:
        return np.zeros(0, np.int64), np.zeros((0, 2), np.float32), np.zeros(0, np.int64)
    frames = np.array([[g.start, g.end] for g in gestures], dtype=np.int64)
    segments = frames_to_window(frames, window_start, window, source_fps, fps)
    inside = (segments[:, 0] >= -_EPS) & (segments[:, 1] <= 1 + _EPS)
    indices = np.flatnonzero(inside)
    labels = np.array([gestures[i].label - 1 for i in indices], dtype=np.int64)
    return indices, np.clip(segments[indices], 0.0, 1.0).astype(np.float32), labels


@dataclass(frozen=True, eq=False)
class Window:
    """One window of one sequence and the ground truths it keeps (segments normalised, labels 0-based)."""

    sequence: int  # sample id, e.g. 1 for Sample0001
    start: int  # first sampled position w0
    size: int  # W sampled frames
    fps: float  # target fps
    source_fps: float  # the video's fps
    num_frames: int  # original frames in the sequence
    gestures: tuple[int, ...]  # indices into the sequence's gesture list
    segments: np.ndarray  # (g, 2) float32
    labels: np.ndarray  # (g,) int64

    @property
    def first_frame(self) -> int:
        """Original frame shown by the window's first sampled frame."""
        return original_frame(self.start, self.source_fps, self.fps)


def make_windows(
    sequences: Sequence[Any],
    window: int,
    stride: int,
    fps: float,
    end_aligned: bool = True,
    drop_empty: bool = False,
    align: int = 1,
) -> list[Window]:
    """Cut every sequence into windows (docs/reference.md, section 3).

    ``sequences``: items with ``sample``, ``num_frames``, ``fps`` (the source fps) and ``gestures``.
    A gesture is kept by a window only when it lies fully inside; ``drop_empty`` drops windows that keep
    none (PointTAD's training rule). ``align``: see :func:`window_starts`.
    """
    windows = []
    for seq in sequences:
        length = num_sampled(seq.num_frames, seq.fps, fps)
        for start in window_starts(length, window, stride, end_aligned, align):
            indices, segments, labels = gestures_in_window(seq.gestures, start, window, seq.fps, fps)
            if drop_empty and len(indices) == 0:
                continue
            windows.append(
                Window(seq.sample, start, window, fps, seq.fps, seq.num_frames, tuple(int(i) for i in indices), segments, labels)
            )
    return windows


def split_windows(sequences: Sequence[Any], data_cfg: Any, split: str, align: int = 1) -> list[Window]:
    """Windows by the configured rules, ``data.window_frames`` long: ``"train"`` strides
    ``data.train_step`` and drops windows without ground truth; ``"test"`` strides ``data.test_step``;
    both end-align a last window (so the end of a sequence is seen in training too)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    stride = data_cfg.train_step if split == "train" else data_cfg.test_step
    return make_windows(sequences, data_cfg.window_frames, stride, data_cfg.fps, end_aligned=True, drop_empty=split == "train", align=align)
