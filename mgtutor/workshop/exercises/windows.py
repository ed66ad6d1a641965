"""Notebook 05's exercises: the clock mapping (the original frame a sampled frame shows, a gesture's
window coordinates) and the cut of a sequence into sliding windows, graded against
`mgtutor.data.windows` (docs/reference.md, section 3).

Shapes: k sampled positions, g gestures (inclusive original-frame ``[start, end]`` pairs).
"""

from __future__ import annotations

import numpy as np

from mgtutor.data import windows as lib
from mgtutor.workshop.check import Case, Exercise, Mistake, register

# -- the original frame a sampled frame shows -------------------------------------------------------


def _shown(k, source_fps, fps):
    return lib.original_frame(k, source_fps, fps)


def _shown_cases() -> list[Case]:
    k = np.arange(60)
    return [
        Case("30 -> 10 fps, k = 0..59", dict(k=k, source_fps=30.0, fps=10.0)),
        Case("25 -> 10 fps (2.5 original frames a sampled one)", dict(k=k, source_fps=25.0, fps=10.0)),
        Case("29.97 -> 9.99 fps (NTSC; exactly 3 a sampled one)", dict(k=k, source_fps=29.97, fps=9.99)),
        Case("15 -> 30 fps (each original frame shown twice)", dict(k=np.arange(7), source_fps=15.0, fps=30.0)),
        Case("k = [0] only", dict(k=np.array([0]), source_fps=30.0, fps=10.0)),
    ]


def _shown_by(rule):
    def shown(k, source_fps, fps):
        return rule(np.asarray(k) * source_fps / fps).astype(np.int64)

    return shown


FRAME_SHOWN = register(Exercise(
    name="frame_shown",
    minutes=4,
    notebook="05",
    reference=_shown,
    reference_name="mgtutor.data.windows.original_frame",
    outputs=("n",),
    cases=_shown_cases,
    mistakes=(
        Mistake(_shown_by(np.round),
                "you round k * source_fps / fps to the nearest frame; sampled frame k shows the instant k / fps, "
                "which original frame n covers while n / source_fps <= k / fps < (n + 1) / source_fps: the floor. "
                "(At 30 -> 10 fps the two agree; at 25 -> 10 they do not.)"),
        Mistake(lambda k, source_fps, fps: np.floor(np.asarray(k) * fps / source_fps).astype(np.int64),
                "your ratio is upside down: going from the sampled clock to the original one multiplies by "
                "source_fps / fps (3 at 30 -> 10 fps: sampled frame 2 shows original frame 6)."),
        Mistake(_shown_by(np.floor),
                "the floor is right, but at 29.97 -> 9.99 fps k * 29.97 / 9.99 comes out as 14.999999999999998 "
                "for k = 5, and its floor is 14, not 15. Add a small slack before flooring, "
                "np.floor(k * source_fps / fps + 1e-6), as mgtutor does."),
    ),
))

# -- a gesture's window coordinates -------------------------------------------------------------


def _to_window(frames, window_start, window, source_fps, fps):
    return lib.frames_to_window(frames, window_start, window, source_fps, fps)


def _to_window_by(end_plus=1, ratio=lambda source_fps, fps: fps / source_fps, subtract_start=True):
    """The mapping with one of its parts changed: the usual slips."""

    def to_window(frames, window_start, window, source_fps, fps):
        r = ratio(source_fps, fps)
        frames = np.asarray(frames, dtype=np.float64)
        segments = np.stack([frames[:, 0] * r, (frames[:, 1] + end_plus) * r], axis=-1)
        return ((segments - window_start) if subtract_start else segments) / window

    return to_window


def _to_window_cases() -> list[Case]:
    frames = np.array([[53, 183], [404, 461], [489, 562], [620, 634]])
    return [
        Case("4 gestures, 30 -> 10 fps, window of 128 at 40", dict(frames=frames, window_start=40, window=128, source_fps=30.0, fps=10.0)),
        Case("the same at 25 -> 10 fps, window at 0", dict(frames=frames, window_start=0, window=128, source_fps=25.0, fps=10.0)),
        Case("a one-frame gesture [300, 300], window of 64 at 96",
             dict(frames=np.array([[300, 300]]), window_start=96, window=64, source_fps=30.0, fps=10.0)),
        Case("no gestures, frames of shape (0, 2)",
             dict(frames=np.zeros((0, 2), dtype=np.int64), window_start=0, window=128, source_fps=30.0, fps=10.0)),
    ]


TO_WINDOW = register(Exercise(
    name="to_window",
    minutes=5,
    notebook="05",
    reference=_to_window,
    reference_name="mgtutor.data.windows.frames_to_window",
    outputs=("segments",),
    cases=_to_window_cases,
    mistakes=(
        Mistake(_to_window_by(end_plus=0),
                "your segments end one original frame early: a gesture [s, e] includes frame e, so it ends where "
                "frame e + 1 begins, at sampled position (e + 1) r (a one-frame gesture has a length, not 0)."),
        Mistake(_to_window_by(ratio=lambda source_fps, fps: source_fps / fps),
                "your ratio is upside down: original frame n begins at sampled position n r with "
                "r = fps / source_fps (1/3 at 30 -> 10 fps: original frame 3 is sampled frame 1)."),
        Mistake(_to_window_by(subtract_start=False),
                "you left out the window's start: position x becomes u = (x - w0) / W, so that the window's first "
                "sampled frame is u = 0 and its end u = 1."),
        Mistake(_to_window_by(end_plus=0, ratio=lambda source_fps, fps: source_fps / fps),
                "two things: the ratio is r = fps / source_fps (original -> sampled divides by 3 at 30 -> 10 fps), "
                "and a gesture [s, e] ends where frame e + 1 begins, (e + 1) r."),
    ),
))

# -- the cut into sliding windows ---------------------------------------------------------------


def _cut(length, window, stride):
    return lib.window_starts(length, window, stride)


def _cut_by(end_aligned=True, always_append=False, short=lambda length, window: [0], last=lambda length, window: length - window):
    def cut(length, window, stride):
        if length <= window:
            return short(length, window)
        starts = list(range(0, length - window + 1, stride))
        if end_aligned and (always_append or starts[-1] != last(length, window)):
            starts.append(last(length, window))
        return starts

    return cut


def _cut_cases() -> list[Case]:
    return [
        Case("300 frames, window 128, stride 32 (training)", dict(length=300, window=128, stride=32)),
        Case("300 frames, window 128, stride 128 (testing)", dict(length=300, window=128, stride=128)),
        Case("256 frames, stride 128: the stride lands on the end", dict(length=256, window=128, stride=128)),
        Case("129 frames, one more than the window", dict(length=129, window=128, stride=128)),
        Case("100 frames, shorter than the window", dict(length=100, window=128, stride=32)),
    ]


CUT_WINDOWS = register(Exercise(
    name="cut_windows",
    minutes=6,
    notebook="05",
    reference=_cut,
    reference_name="mgtutor.data.windows.window_starts",
    outputs=("starts",),
    cases=_cut_cases,
    mistakes=(
        Mistake(_cut_by(end_aligned=False),
                "you left out the end-aligned window: when the stride does not land on the end, one more window "
                "starts at length - window, so that the sequence's last frames are seen too."),
        Mistake(_cut_by(always_append=True),
                "when the stride lands exactly on the end (256 frames, stride 128), the last window is already "
                "end-aligned: append length - window only when it differs from the last start, or that window "
                "comes twice."),
        Mistake(_cut_by(last=lambda length, window: length - window - 1),
                "your end-aligned window starts one frame early: a window starting at s covers s .. s + window - 1, "
                "so it ends on the last frame (length - 1) when s = length - window."),
        Mistake(_cut_by(short=lambda length, window: [length - window]),
                "a sequence shorter than the window gets one window at 0 (the dataset pads its clip); yours starts "
                "before the sequence does."),
        Mistake(_cut_by(short=lambda length, window: []),
                "a sequence shorter than the window gets one window at 0 (the dataset pads its clip), not none: "
                "otherwise its gestures are never seen."),
    ),
))
