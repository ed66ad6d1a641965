"""Video decoding with PyAV: resampled to a target fps, resized inside the decoder (docs/reference.md, section 7).

A decoded frame's original index ``n`` comes from its timestamp, ``n = round(t * rate)`` with ``t`` its
time from the stream's start and ``rate`` the container's frame rate, so decoding after a seek numbers
frames exactly as decoding from the start. Sampled frame ``k`` then shows original frame
``mgtutor.data.windows.original_frame(k, source_fps, fps)``; ``source_fps`` is the sequence's fps from
``_data.csv``, the unit of its label files. Frames come out as uint8 ``(height, width, 3)`` RGB.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from mgtutor.data.errors import DataError
from mgtutor.data.windows import num_sampled, original_frame

# A video may end this many seconds before its _data.csv frame count: the missing sampled frames repeat
# the last decoded one (Kinect exports often drop a frame or two at the end). More is an error, for
# check-data, prepare and training alike (check_length).
MAX_PAD_SECONDS = 1.0


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video's first video stream."""

    path: Path
    width: int
    height: int
    fps: float  # the container's average frame rate
    frames: int  # frame count from the container (0 when it does not say)
    duration: float  # seconds (0.0 when the container does not say)


def _open(path: Path):
    if not path.exists():
        raise DataError(path, "file is missing: expected the sequence's video")
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise DataError(path, f"cannot open the video (expected an mp4 FFmpeg can read; truncated or corrupt?): {err}") from err
    if not container.streams.video:
        container.close()
        raise DataError(path, "the file holds no video stream")
    return container


def probe(path: str | Path) -> VideoInfo:
    """Read a video's size, frame rate, frame count and duration without decoding it."""
    path = Path(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        if not rate:
            raise DataError(path, "the video stream has no frame rate")
        duration = float(stream.duration * stream.time_base) if stream.duration else 0.0
        return VideoInfo(path, stream.codec_context.width, stream.codec_context.height, float(rate), int(stream.frames or 0), duration)


def output_size(width: int, height: int, short_side: int | None = None, size: tuple[int, int] | None = None) -> tuple[int, int]:
    """``(width, height)`` after resizing: ``size`` as given, or the short side scaled to ``short_side``
    keeping the aspect ratio, or unchanged."""
    if size is not None:
        return int(size[0]), int(size[1])
    if short_side is None:
        return width, height
    scale = short_side / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def iter_frames(
    path: str | Path,
    fps: float,
    source_fps: float | None = None,
    short_side: int | None = None,
    size: tuple[int, int] | None = None,
    start: int = 0,
    stop: int | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Stream ``(k, frame)`` for sampled positions ``k = start, start + 1, ...`` (up to ``stop`` or the
    video's end), each frame uint8 ``(height, width, 3)``.

    Online prediction consumes this one frame at a time. ``source_fps`` defaults to the container's
    rate. With ``start > 0`` the decoder seeks to the keyframe before it instead of decoding from 0.
    A sampled frame whose original frame is missing from the stream shows the next decoded frame; a
    frame shown by several sampled positions is the same array object each time (do not modify it).
    """
    path = Path(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate or stream.guessed_rate or 0) or None
        if rate is None:
            raise DataError(path, "the video stream has no frame rate")
        source_fps = source_fps or rate
        width, height = output_size(stream.codec_context.width, stream.codec_context.height, short_side, size)
        time_base = float(stream.time_base)
        first_pts = stream.start_time or 0
        k = start
        target = original_frame(k, source_fps, fps)
        if target > 0:
            # seek on the stream's own clock to the keyframe at or before the first frame we need
            container.seek(first_pts + int(target / rate / time_base), stream=stream, backward=True)
        counter = -1
        try:
            for frame in container.decode(stream):
                counter += 1
                n = round((frame.pts - first_pts) * time_base * rate) if frame.pts is not None else counter
                if n < target:
                    continue
                image = None
                while target <= n and (stop is None or k < stop):
                    if image is None:
                        image = frame.to_ndarray(width=width, height=height, format="rgb24")
                    yield k, image
                    k += 1
                    target = original_frame(k, source_fps, fps)
                if stop is not None and k >= stop:
                    return
        except av.error.FFmpegError as err:
            raise DataError(path, f"video is corrupt or truncated after sampled frame {k} (original frame {target}): {err}") from err


def decode(
    path: str | Path,
    fps: float,
    num_frames: int,
    source_fps: float,
    short_side: int | None = None,
    size: tuple[int, int] | None = None,
    start: int = 0,
    count: int | None = None,
) -> np.ndarray:
    """Sampled frames ``[start, start + count)`` (default: all) of a video of ``num_frames`` original
    frames as uint8 ``(count, height, width, 3)``.

    A video that ends at most :data:`MAX_PAD_SECONDS` early has its last frame repeated; one that ends
    earlier raises DataError.
    """
    path = Path(path)
    total = num_sampled(num_frames, source_fps, fps)
    stop = total if count is None else min(start + count, total)
    frames = [image for _, image in iter_frames(path, fps, source_fps, short_side, size, start, stop)]
    missing = stop - start - len(frames)
    if missing > 0:
        check_length(path, count_frames(path), num_frames, source_fps)
        if not frames:
            raise DataError(path, f"no frame from sampled frame {start} on could be decoded (numFrames={num_frames} in _data.csv)")
        frames.extend([frames[-1]] * missing)
    return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)


def max_missing_frames(source_fps: float) -> int:
    """Original frames a video may lack at its end, against ``numFrames``: :data:`MAX_PAD_SECONDS` of
    them, at least one."""
    return max(1, math.floor(MAX_PAD_SECONDS * source_fps))


def check_length(path: str | Path, frames: int, num_frames: int, source_fps: float, last_end: int = -1) -> None:
    """The one rule for a video's length: DataError naming ``path`` when its ``frames`` (original frames
    it holds) end before the last labelled frame ``last_end``, or lack more than
    :func:`max_missing_frames` of the ``num_frames`` of ``_data.csv``. A shorter shortfall is padded with
    the last frame wherever frames are read."""
    if frames <= last_end:
        raise DataError(path, f"video has {frames} frames but a gesture ends at frame {last_end}; truncated?")
    allowed = max_missing_frames(source_fps)
    if num_frames - frames > allowed:
        raise DataError(
            path,
            f"video has {frames} frames, {num_frames - frames} fewer than numFrames={num_frames} in _data.csv "
            f"(at most {allowed}, {MAX_PAD_SECONDS:g} s, may be missing); truncated, or a wrong numFrames?",
        )


def count_frames(path: str | Path, full: bool = False) -> int:
    """The original frames a video holds, counted by decoding (tiny frames): from a second before the end
    the container lists (or, with ``full``, every frame). Raises DataError when none can be decoded there."""
    path = Path(path)
    info = probe(path)
    one_second = max(1, round(info.fps))
    start = 0 if full or not info.frames else max(0, info.frames - one_second)
    last = -1
    for last, _ in iter_frames(path, info.fps, size=(32, 32), start=start):
        pass
    if last < 0:
        raise DataError(path, f"no frame from frame {start} on could be decoded (the container lists {info.frames}); truncated or corrupt?")
    return last + 1


def check_video(
    path: str | Path, num_frames: int | None, source_fps: float | None, last_end: int = -1, full: bool = False
) -> tuple[list[str], list[str]]:
    """Problems and warnings about one video, for ``mgtutor check-data``.

    Decodes the first second and the last second (or every frame with ``full``): a file that cannot be
    opened or decoded, that decodes fewer frames than its container lists, or that breaks the length
    rule of :func:`check_length` is a problem; a frame count or rate that differs from ``_data.csv`` is a
    warning. ``num_frames`` and ``source_fps`` None (an unreadable ``_data.csv``) check the file alone.
    """
    path = Path(path)
    problems: list[str] = []
    warnings: list[str] = []
    try:
        info = probe(path)
        if source_fps is not None and abs(info.fps - source_fps) > 0.01 * source_fps:
            warnings.append(f"{path}: container frame rate {info.fps:g} differs from fps={source_fps:g} in _data.csv (the labels' rate is used)")
        one_second = max(1, round(info.fps))
        if not full:
            first = -1
            for first, _ in iter_frames(path, info.fps, size=(32, 32), stop=one_second):
                pass
            if first < 0:
                raise DataError(path, "no frame could be decoded; corrupt?")
        frames = count_frames(path, full=full)
        if info.frames and frames < info.frames:
            problems.append(str(DataError(path, f"only {frames} of the {info.frames} frames the container lists could be decoded; truncated or corrupt?")))
        elif num_frames is not None:
            check_length(path, frames, num_frames, source_fps, last_end)
            if frames != num_frames:
                warnings.append(f"{path}: video has {frames} frames, _data.csv says numFrames={num_frames}")
        elif frames <= last_end:
            check_length(path, frames, frames, info.fps, last_end)
    except DataError as err:
        problems.extend(err.problems)
    return problems, warnings
