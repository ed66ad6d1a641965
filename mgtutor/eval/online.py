"""Online recognition: the detector on a video consumed as a stream, each detection reported once certain.

The task's name is *online* recognition: a system watching a person should say "scratching head" soon
after the gesture ends, not after the whole video. :class:`OnlineRecognizer` takes the original frames
one at a time (``push``), in order, and ``finish()`` at the end of the stream. Its detections equal the
offline path's (:mod:`mgtutor.eval.inference`, then :mod:`mgtutor.eval.pipeline`) on the same video,
after the same post-processing, because every step is the offline one:

- sampling: original frame ``n`` becomes the sampled frames ``k`` with
  ``mgtutor.data.windows.original_frame(k) == n`` (what the offline decoder yields);
- preprocessing: the test centre crop and scaling of :mod:`mgtutor.data.dataset` (``centre_box``,
  ``frames_to_clip``), on frames already resized to ``data.short_side`` (as the decoder resizes them);
- windows: the test windows of :func:`mgtutor.data.windows.window_starts`. Window ``[w0, w0 + W)`` runs as
  soon as its last frame has arrived; the end-aligned last window runs at ``finish()``, when the length
  is known. Only the last ``W`` sampled frames are kept: the recognizer never looks further ahead;
- detections: :func:`~mgtutor.eval.postprocess.window_detections` with the window's frame mapping, then
  :func:`~mgtutor.eval.postprocess.merge_windows`' rule, the score threshold and per-class NMS.

When is a detection certain? Mostly when its window completes. Three things can still change one
afterwards, and the recognizer waits for each, deciding with the offline functions themselves:

1. merging: the end-aligned window, if the stream ends before the next regular window is complete,
   overlaps the last regular one and takes the detections whose centre is nearer to its own centre.
   For every number of frames ``M`` the video might still end with, the recognizer builds that ending's
   window layout and applies :func:`~mgtutor.eval.postprocess.merge_windows`; a detection is reported
   once all possible endings agree on keeping it (or dropped once they agree on dropping it). In the
   first half of a window that is at once; near a window's end it takes up to one more window.
2. the video's last frames: frame numbers are clipped to the video (``num_frames``), so a detection
   ending in the last frame or two seen is certain only once the next frame arrives or the stream ends.
3. NMS: a higher-scored detection of the same class that overlaps may still come from a later window.
   With NMS on, a detection waits until no detection that could still arrive can overlap any detection
   chained to it by overlap (greedy NMS is decided within such a chain).

``delay_seconds`` is then the video time from the gesture's end to its report: the time of the frame
whose arrival made it certain, minus the time of its end frame (frame ``n`` is at ``n / source_fps``).

The video's frame count is the number of frames pushed; on a sequence whose video holds the
``numFrames`` of its ``_data.csv`` this is the offline path's ``num_frames``.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from mgtutor.config import Config, ConfigError
from mgtutor.data.dataset import centre_box, frames_to_clip
from mgtutor.data.errors import DataError
from mgtutor.data.smg import FILE_SUFFIXES, parse_sample_name, read_data, sample_name
from mgtutor.data.video import iter_frames, probe
from mgtutor.data.windows import check_frame_rate, num_sampled, original_frame, window_starts, window_to_frames
from mgtutor.eval.inference import last_layer
from mgtutor.eval.postprocess import Detection, Settings, WindowDetections, merge_windows, nms, postprocessing_settings, window_detections


class OnlineDetection(NamedTuple):
    """A detection as the stream reports it."""

    detection: Detection  # label 1-based, original frames, score: as the offline path gives it
    reported_frame: int  # the original frame whose arrival (or the stream's end after it) made it certain
    reported_at: float  # that frame's time in the video, seconds
    delay_seconds: float  # reported_at minus the time of the detection's end frame


@dataclass
class _Candidate:
    """A query of a processed window that passes the score threshold, and its fate for every ending.

    ``outcomes[i]`` is the detection as the offline path would report it if the video had
    ``first_ending + i`` frames (None: merged away); from ``certain_from`` frames on, all agree.
    """

    outcomes: list[Detection | None]
    first_ending: int
    certain_from: int

    def outcome(self, frames: int) -> Detection | None:
        return self.outcomes[min(frames - self.first_ending, len(self.outcomes) - 1)]

    def earliest_start(self, frames: int) -> float:
        """The smallest start frame the detection can still get (inf when every ending drops it)."""
        starts = [d.start for d in self.outcomes[frames - self.first_ending :] if d is not None]
        return min(starts, default=float("inf"))


class OnlineRecognizer:
    """Streams a video through the detector (module docstring).

    Args:
        model: a :class:`~mgtutor.model.detector.Detector` with a video encoder ("i3d" or "small").
        cfg: its configuration (``data`` for sampling, windows and preprocessing).
        source_fps: the video's frame rate (the unit of its frame numbers).
        device: where the model is (default: the device of its parameters).
        postprocessing: the score threshold and NMS: a :class:`~mgtutor.eval.pipeline.Postprocessing`
            (:func:`~mgtutor.eval.pipeline.resolve_postprocessing`), or ``cfg.eval`` when that sets
            ``score_threshold`` (default).

    ``push(frame)`` takes each original frame, uint8 ``(H, W, 3)`` RGB resized so its short side is
    ``data.short_side`` (as ``iter_frames(..., short_side=cfg.data.short_side)`` decodes it), and returns
    the detections that became certain; ``finish()`` returns the rest. ``reported`` holds all so far.
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: Config,
        source_fps: float,
        device: torch.device | str | None = None,
        postprocessing: Settings | None = None,
    ):
        if cfg.model.encoder == "features":
            raise ConfigError("online recognition reads video: model.encoder must be 'i3d' or 'small', not 'features'")
        if not source_fps > 0:
            raise ValueError(f"source_fps must be positive, got {source_fps}")
        self.score_threshold, self.nms_iou = postprocessing_settings(postprocessing if postprocessing is not None else cfg.eval)
        self.model = model.eval()
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.data = cfg.data
        self.source_fps = float(source_fps)
        self.window = cfg.data.window_frames
        self.stride = cfg.data.test_step
        self.frames_seen = 0  # original frames pushed
        self.sampled = 0  # sampled frames produced from them
        self.windows_run: list[int] = []  # first sampled positions of the windows run so far
        self.reported: list[OnlineDetection] = []
        self._buffer: deque[np.ndarray] = deque(maxlen=self.window)  # the last W cropped sampled frames
        self._shape: tuple[int, ...] | None = None
        self._box: tuple[int, int] | None = None
        self._candidates: list[_Candidate] = []
        self._open: list[Detection] = []  # kept by merging, waiting for NMS to be certain
        self._finished = False

    # -- the stream ----------------------------------------------------------------------------------

    def push(self, frame: np.ndarray) -> list[OnlineDetection]:
        """Take the next original frame; returns the detections that became certain with it."""
        if self._finished:
            raise RuntimeError("finish() was called: make a new OnlineRecognizer for another stream")
        frame = self._check(frame)
        n = self.frames_seen
        self.frames_seen += 1
        size = self.data.crop
        top, left = self._box
        while original_frame(self.sampled, self.source_fps, self.data.fps) <= n:
            self._buffer.append(np.array(frame[top : top + size, left : left + size]))
            self.sampled += 1
            start = self.sampled - self.window
            if start >= 0 and start % self.stride == 0:  # a regular test window is complete
                self._run_window(start)
        return self._resolve(final=False)

    def finish(self) -> list[OnlineDetection]:
        """End of the stream: run the end-aligned (or the only, padded) window; report everything left."""
        if self._finished:
            return []
        self._finished = True
        if self.sampled == 0:
            return []
        for start in window_starts(self.sampled, self.window, self.stride):
            if start not in self.windows_run:
                self._run_window(start)
        return self._resolve(final=True)

    @property
    def detections(self) -> list[Detection]:
        """The detections reported so far, in the order of their reports."""
        return [r.detection for r in self.reported]

    def _check(self, frame: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame)
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected a uint8 RGB frame (H, W, 3), got {frame.dtype} {frame.shape}")
        if self._shape is None:
            if min(frame.shape[:2]) != self.data.short_side:
                raise ValueError(
                    f"frames must be resized so their short side is data.short_side={self.data.short_side} "
                    f"(as iter_frames(..., short_side=...) decodes them), got {frame.shape[1]}x{frame.shape[0]}"
                )
            self._shape = frame.shape
            self._box = centre_box(frame.shape[0], frame.shape[1], self.data.crop)
        elif frame.shape != self._shape:
            raise ValueError(f"frame {self.frames_seen} has shape {frame.shape}, the stream's first had {self._shape}")
        return frame

    # -- windows and the fate of their detections ----------------------------------------------------

    def _to_frames(self, start: int, num_frames: int | None):
        """Window -> original frames for window ``start`` of a video of ``num_frames`` frames (the
        mapping that ``meta_to_frames`` binds offline)."""
        return functools.partial(
            window_to_frames, window_start=start, window=self.window, source_fps=self.source_fps, fps=self.data.fps, num_frames=num_frames
        )

    def _layout(self, num_frames: int) -> tuple[list[int], list[WindowDetections]]:
        """The test windows of a video of ``num_frames`` frames: their starts, and their extents in
        original frames as ``window_detections`` computes them, without detections (merging needs
        only the extents)."""
        starts = window_starts(num_sampled(num_frames, self.source_fps, self.data.fps), self.window, self.stride)
        extents = window_to_frames(
            np.array([[0.0, 1.0]]), np.array(starts)[:, None], self.window, self.source_fps, self.data.fps, num_frames
        )
        return starts, [WindowDetections((first, last), []) for first, last in extents.tolist()]

    def _endings(self, start: int, final: bool) -> range:
        """Frame counts the video may still end with that could change window ``start``'s detections.

        Once the video reaches ``start + 3W + 2 stride`` sampled frames the windows near this one are
        fixed and any end-aligned window lies more than a window away, so longer videos agree with it.
        """
        if final:
            return range(self.frames_seen, self.frames_seen + 1)
        far = start + 3 * self.window + 2 * self.stride
        return range(self.frames_seen, original_frame(far - 1, self.source_fps, self.data.fps) + 2)

    @torch.no_grad()
    def _run_window(self, start: int) -> None:
        frames = list(self._buffer)[: self.sampled - start]  # the window's frames (fewer when it is padded)
        clip = frames_to_clip(np.stack(frames), self.window)
        logits, segments = last_layer(self.model, clip[None].to(self.device))
        logits, segments = logits[0], segments[0]
        self.windows_run.append(start)
        unclipped = window_detections(logits, segments, self._to_frames(start, None))
        candidates = [q for q, d in enumerate(unclipped.detections) if d.score >= self.score_threshold]
        if not candidates:
            return
        # clipping to a video of M frames changes nothing once M - 1 >= every frame of the window
        enough = 1 + max(unclipped.extent[1], *(max(d.start, d.end) for d in unclipped.detections))
        mapped = {enough: unclipped}
        endings = self._endings(start, self._finished)
        outcomes: list[list[Detection | None]] = []
        for num_frames in endings:
            key = min(num_frames, enough)
            if key not in mapped:
                mapped[key] = window_detections(logits, segments, self._to_frames(start, key))
            found = mapped[key]
            mine = [found.detections[q] for q in candidates]
            starts, layout = self._layout(num_frames)
            layout[starts.index(start)] = WindowDetections(found.extent, mine)
            kept = {id(d) for d in merge_windows(layout)}  # merge_windows returns the objects it keeps
            outcomes.append([d if id(d) in kept else None for d in mine])
        for q in range(len(candidates)):
            fates = [row[q] for row in outcomes]
            first = len(fates) - 1
            while first > 0 and fates[first - 1] == fates[-1]:
                first -= 1
            self._candidates.append(_Candidate(fates, endings.start, endings.start + first))

    # -- reporting -----------------------------------------------------------------------------------

    def _resolve(self, final: bool) -> list[OnlineDetection]:
        """Move candidates whose fate is certain on; report what is certain now."""
        frames = self.frames_seen
        waiting = []
        kept = []
        for candidate in self._candidates:
            if final or candidate.certain_from <= frames:
                outcome = candidate.outcome(frames)
                if outcome is not None:
                    kept.append(outcome)
            else:
                waiting.append(candidate)
        self._candidates = waiting
        if self.nms_iou is None:
            return self._report(kept)
        self._open.extend(kept)
        return self._report(self._close_chains(self._frontier(final)))

    def _frontier(self, final: bool) -> float:
        """A frame no detection still to come can start before: the earliest start of undecided
        candidates and of the windows not yet run (inf at the end of the stream)."""
        if final:
            return float("inf")
        frames = self.frames_seen
        earliest = min((c.earliest_start(frames) for c in self._candidates), default=float("inf"))
        first_future = max(0, self.sampled - self.window)  # no window still to run starts before this
        future = window_to_frames(np.array([[0.0, 0.0]]), first_future, self.window, self.source_fps, self.data.fps)[0, 0]
        # clipping to a video of at least `frames` frames can only lower a start to frames - 1
        return min(earliest, float(future), frames - 1)

    def _close_chains(self, frontier: float) -> list[Detection]:
        """Per-class NMS on every chain of overlapping open detections that nothing to come can reach."""
        done: list[Detection] = []
        still_open: list[Detection] = []
        for label in sorted({d.label for d in self._open}):
            members = sorted((d for d in self._open if d.label == label), key=lambda d: (d.start, d.end, d.label))
            chain: list[Detection] = []
            chain_end = -float("inf")
            for d in members + [None]:
                if d is not None and d.start < chain_end:  # overlaps a member (sorted by start)
                    chain.append(d)
                    chain_end = max(chain_end, d.end)
                    continue
                # a detection still to come starts at or after the frontier, so it cannot overlap this chain
                if chain_end <= frontier:
                    done.extend(nms(chain, self.nms_iou))
                else:
                    still_open.extend(chain)
                if d is not None:
                    chain, chain_end = [d], d.end
        self._open = still_open
        return done

    def _report(self, detections: Sequence[Detection]) -> list[OnlineDetection]:
        last = self.frames_seen - 1
        now = last / self.source_fps
        reports = [
            OnlineDetection(d, last, now, now - d.end / self.source_fps)
            for d in sorted(detections, key=lambda d: (d.start, d.end, d.label))
        ]
        self.reported.extend(reports)
        return reports


def video_source_fps(video: str | Path) -> float:
    """A video's frame rate: from the ``SampleXXXX_data.csv`` beside it when there is one (the unit of
    SMG's label files), else from the container."""
    video = Path(video)
    sample = video_sample(video)
    if sample is not None:
        data = video.with_name(f"{sample_name(sample)}_{FILE_SUFFIXES['data']}")
        if data.exists():
            return read_data(data).fps
    rate = probe(video).fps
    try:
        return check_frame_rate(rate, "its container's frame rate")
    except ValueError as err:
        raise DataError(video, str(err)) from None


def video_sample(video: str | Path) -> int | None:
    """The sample id a video's name gives (``SampleXXXX_color.mp4`` and other ``SampleXXXX_*`` names), or None."""
    parsed = parse_sample_name(Path(video).name)
    return parsed.sample if parsed is not None and parsed.kind is not None else None


def recognize_video(
    model: nn.Module,
    cfg: Config,
    video: str | Path,
    device: torch.device | str | None = None,
    postprocessing: Settings | None = None,
    source_fps: float | None = None,
) -> Iterator[OnlineDetection]:
    """Decode ``video`` frame by frame (every original frame, resized as the offline decoder resizes
    them) through an :class:`OnlineRecognizer`, yielding each detection when it is reported."""
    source_fps = source_fps or video_source_fps(video)
    recognizer = OnlineRecognizer(model, cfg, source_fps, device, postprocessing)
    for _, frame in iter_frames(video, source_fps, source_fps, short_side=cfg.data.short_side):
        yield from recognizer.push(frame)
    yield from recognizer.finish()
