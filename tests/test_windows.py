"""The frame <-> sampled position <-> window mapping, both ways, and the sliding-window rules."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from mgtutor.config import DataConfig
from mgtutor.data.smg import Gesture
from mgtutor.data.windows import (
    frames_to_window,
    gestures_in_window,
    make_windows,
    num_sampled,
    original_frame,
    sampled_position,
    split_windows,
    window_starts,
    window_to_frames,
)

RATES = [(30.0, 10.0), (29.97, 10.0), (25.0, 10.0), (30.0, 30.0), (30.0, 7.0), (10.0, 30.0)]


@pytest.mark.parametrize("source_fps, fps", RATES)
def test_original_frame_and_sampled_position_are_one_mapping(source_fps, fps):
    k = np.arange(5000)
    n = original_frame(k, source_fps, fps)
    # sampled frame k shows the original frame whose span [n r, (n + 1) r) contains k
    assert np.all(sampled_position(n, source_fps, fps) <= k + 1e-9)
    assert np.all(k < sampled_position(n + 1, source_fps, fps))
    # and the other way: every integer k inside frame n's span maps back to n
    for frame in range(0, 3000, 7):
        lo, hi = sampled_position(frame, source_fps, fps), sampled_position(frame + 1, source_fps, fps)
        inside = np.arange(np.ceil(lo - 1e-9), np.ceil(hi - 1e-9)).astype(int)
        assert all(original_frame(int(j), source_fps, fps) == frame for j in inside)


def test_original_frame_at_30_to_10_fps_takes_every_third_frame():
    assert original_frame(np.arange(5), 30, 10).tolist() == [0, 3, 6, 9, 12]
    assert original_frame(4, 30, 10) == 12 and isinstance(original_frame(4, 30, 10), int)
    assert sampled_position(12, 30, 10) == 4.0
    # 29.97 fps: float products like 2.9999999 must still floor to the right frame
    assert original_frame(np.arange(4), 29.97, 9.99).tolist() == [0, 3, 6, 9]


@pytest.mark.parametrize("source_fps, fps", RATES)
def test_num_sampled_counts_the_sampled_frames_inside_the_video(source_fps, fps):
    for num_frames in [1, 2, 3, 4, 29, 30, 31, 2699, 2700, 2701]:
        t = num_sampled(num_frames, source_fps, fps)
        assert original_frame(t - 1, source_fps, fps) < num_frames <= original_frame(t, source_fps, fps)
    assert num_sampled(2700, 30, 10) == 900 and num_sampled(2701, 30, 10) == 901
    assert num_sampled(0, 30, 10) == 0


@pytest.mark.parametrize("source_fps, fps", RATES)
def test_frames_to_window_to_frames_is_the_identity(source_fps, fps):
    rng = np.random.default_rng(0)
    window, w0 = 128, 40
    r = fps / source_fps
    first, last = int(np.ceil(w0 / r)), int((w0 + window) / r) - 1
    starts = rng.integers(first, last, 500)
    ends = np.minimum(starts + rng.integers(0, 200, 500), last)
    frames = np.stack([starts, ends], -1)
    segments = frames_to_window(frames, w0, window, source_fps, fps)
    assert segments.shape == (500, 2)
    assert np.all(segments >= -1e-9) and np.all(segments <= 1 + 1e-9)
    np.testing.assert_array_equal(window_to_frames(segments, w0, window, source_fps, fps), frames)


def test_gesture_span_in_window_units():
    # gesture [30, 59] at 30 -> 10 fps spans sampled positions [10, 20): in a window of 128 from 0
    np.testing.assert_allclose(frames_to_window([[30, 59]], 0, 128, 30, 10), [[10 / 128, 20 / 128]])
    np.testing.assert_allclose(frames_to_window([30, 59], 8, 16, 30, 10), [2 / 16, 12 / 16])
    # a one-frame gesture keeps positive length
    seg = frames_to_window([[31, 31]], 0, 128, 30, 10)[0]
    assert seg[1] > seg[0]


def test_window_to_frames_clips_to_the_video_and_keeps_order():
    frames = window_to_frames([[0.5, 0.5], [-0.1, 1.2]], 0, 128, 30, 10, num_frames=300)
    start, end = frames[0]
    assert end >= start
    assert frames[1].tolist() == [0, 299]


def test_window_starts_with_the_end_aligned_last_window():
    assert window_starts(300, 128, 128) == [0, 128, 172]
    assert window_starts(256, 128, 128) == [0, 128]  # stride lands on the end: no extra window
    assert window_starts(300, 128, 32) == [0, 32, 64, 96, 128, 160, 172]
    assert window_starts(300, 128, 128, end_aligned=False) == [0, 128]
    assert window_starts(100, 128, 32) == [0]  # shorter than a window: one, padded by the dataset
    assert window_starts(128, 128, 32) == [0]
    with pytest.raises(ValueError):
        window_starts(100, 0, 32)
    # aligned to the features' stride 4: the last start rounds up, reaching past the end by < 4
    assert window_starts(302, 128, 128, align=4) == [0, 128, 176]
    assert window_starts(302, 128, 32, align=4)[-1] == 176
    with pytest.raises(ValueError, match="multiple"):
        window_starts(302, 128, 30, align=4)


def _sequence(sample, num_frames, gestures, fps=30.0):
    return SimpleNamespace(sample=sample, num_frames=num_frames, fps=fps, gestures=tuple(gestures))


def test_a_gesture_is_kept_only_when_fully_inside():
    # window [0, 128) sampled = original frames [0, 384) at 30 -> 10 fps
    gestures = [Gesture(3, 0, 383), Gesture(4, 0, 384), Gesture(5, 370, 400), Gesture(17, 100, 120)]
    idx, seg, lab = gestures_in_window(gestures, 0, 128, 30, 10)
    assert idx.tolist() == [0, 3]
    assert lab.tolist() == [2, 16]  # 0-based
    np.testing.assert_allclose(seg[0], [0.0, 1.0])
    assert seg.dtype == np.float32 and lab.dtype == np.int64
    idx, seg, lab = gestures_in_window([], 0, 128, 30, 10)
    assert seg.shape == (0, 2) and lab.shape == (0,)


def test_make_windows_train_and_test_rules():
    seq = _sequence(7, 900, [Gesture(1, 10, 60), Gesture(2, 800, 899), Gesture(3, 300, 330)])
    # 900 frames at 30 fps -> 300 sampled frames at 10 fps
    test = make_windows([seq], 128, 128, 10.0)
    assert [w.start for w in test] == [0, 128, 172]
    assert test[-1].start + test[-1].size == 300
    assert test[0].gestures == (0, 2) and test[1].gestures == () and test[2].gestures == (1,)
    assert test[2].first_frame == 516 and test[2].sequence == 7 and test[2].num_frames == 900
    train = make_windows([seq], 128, 32, 10.0, drop_empty=True)
    assert all(len(w.gestures) for w in train)
    kept = {i for w in train for i in w.gestures}
    assert kept == {0, 1, 2}
    # gesture 2 spans sampled [100, 110.3), gesture 1 [266.7, 300): windows from 128 and 160 hold
    # neither fully and are dropped in training only
    assert [w.start for w in train] == [0, 32, 64, 96, 172]
    # the end-aligned window keeps the last gesture, which no strided window holds
    np.testing.assert_allclose(test[2].segments[0], [(800 / 3 - 172) / 128, 1.0], rtol=1e-6)


def test_split_windows_reads_the_configuration():
    seq = _sequence(1, 900, [Gesture(1, 10, 60)])
    cfg = DataConfig(window=64)
    train = split_windows([seq], cfg, "train")
    test = split_windows([seq], cfg, "test")
    assert [w.start for w in train] == [0]  # windows at 16, 32, ... lose the gesture at [3.3, 20.3)
    assert [w.start for w in test] == [0, 64, 128, 192, 236]
    cfg = DataConfig(window=64, train_stride=8)
    assert len(split_windows([seq], cfg, "train")) == 1
    with pytest.raises(ValueError, match="split"):
        split_windows([seq], cfg, "val")
