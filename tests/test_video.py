"""PyAV decoding: resampling by timestamps to the shared frame mapping, seeking, resizing, corrupt files."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest

from mgtutor.data.errors import DataError
from mgtutor.data.video import check_video, decode, iter_frames, output_size, probe
from mgtutor.data.windows import num_sampled, original_frame


def write_counter_video(path, num_frames, fps, width=48, height=32):
    """A video whose frame n is a flat grey of level 4 * n (mod 256): decoding tells which frame it saw."""
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast", "qp": "0", "g": "12", "threads": "1"}
        for n in range(num_frames):
            image = np.full((height, width, 3), (4 * n) % 256, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frame_numbers(frames):
    """Recover original frame numbers from counter-video frames (levels 0, 4, ..., 252)."""
    return np.rint(frames.reshape(len(frames), -1).mean(1) / 4).astype(int)


@pytest.fixture(scope="module")
def counter30(tmp_path_factory):
    return write_counter_video(tmp_path_factory.mktemp("video") / "c30.mp4", 60, 30)


def test_probe_reads_the_container(counter30):
    info = probe(counter30)
    assert (info.width, info.height, info.fps, info.frames) == (48, 32, 30.0, 60)
    assert info.duration == pytest.approx(2.0, abs=0.05)


@pytest.mark.parametrize("fps", [10.0, 30.0, 7.0, 60.0])
def test_decoded_sampled_frames_follow_original_frame(counter30, fps):
    frames = decode(counter30, fps=fps, num_frames=60, source_fps=30.0)
    assert len(frames) == num_sampled(60, 30.0, fps)
    expected = original_frame(np.arange(len(frames)), 30.0, fps)
    np.testing.assert_array_equal(frame_numbers(frames), expected)


def test_25_fps_source(tmp_path):
    path = write_counter_video(tmp_path / "c25.mp4", 50, 25)
    frames = decode(path, fps=10, num_frames=50, source_fps=25)
    np.testing.assert_array_equal(frame_numbers(frames), [0, 2, 5, 7, 10, 12, 15, 17, 20, 22, 25, 27, 30, 32, 35, 37, 40, 42, 45, 47])


@pytest.mark.parametrize("start", [0, 1, 5, 7, 13, 19])
def test_seeking_gives_the_same_frames_as_decoding_from_the_start(counter30, start):
    full = decode(counter30, fps=10, num_frames=60, source_fps=30)
    part = decode(counter30, fps=10, num_frames=60, source_fps=30, start=start, count=4)
    np.testing.assert_array_equal(part, full[start : start + 4])


def test_streaming_iterator_yields_positions_in_order(counter30):
    positions = [k for k, _ in iter_frames(counter30, fps=10, source_fps=30, start=3, stop=9)]
    assert positions == [3, 4, 5, 6, 7, 8]
    k, image = next(iter_frames(counter30, fps=10, source_fps=30))
    assert k == 0 and image.shape == (32, 48, 3) and image.dtype == np.uint8


def test_resizing_in_the_decoder(counter30):
    assert output_size(1920, 1080, short_side=256) == (455, 256)
    assert output_size(128, 128, short_side=64) == (64, 64)
    assert output_size(1920, 1080, size=(64, 48)) == (64, 48)
    assert output_size(40, 30) == (40, 30)
    frames = decode(counter30, fps=10, num_frames=60, source_fps=30, short_side=16)
    assert frames.shape == (20, 16, 24, 3)


def test_a_short_video_is_padded_a_little_and_refused_when_much_shorter(counter30):
    frames = decode(counter30, fps=10, num_frames=63, source_fps=30)  # 1 sampled frame missing: padded
    assert len(frames) == 21
    np.testing.assert_array_equal(frames[-1], frames[-2])
    with pytest.raises(DataError, match="c30.mp4: video has 60 frames, 60 fewer than numFrames=120 .*at most 30, 1 s"):
        decode(counter30, fps=10, num_frames=120, source_fps=30)


def test_truncated_and_garbage_videos_give_clear_errors(counter30, tmp_path):
    data = counter30.read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    for path in (truncated, garbage):
        with pytest.raises(DataError, match=f"{path.name}: cannot open the video"):
            decode(path, fps=10, num_frames=60, source_fps=30)
        problems, _ = check_video(path, 60, 30.0)
        assert len(problems) == 1 and path.name in problems[0]
    with pytest.raises(DataError, match="missing.mp4: file is missing"):
        probe(tmp_path / "missing.mp4")


def test_check_video_on_a_good_file_and_a_short_one(counter30):
    assert check_video(counter30, 60, 30.0, last_end=59) == ([], [])
    problems, warnings = check_video(counter30, 60, 30.0, last_end=59, full=True)
    assert problems == [] and warnings == []
    problems, warnings = check_video(counter30, 90, 30.0, last_end=70)
    assert "gesture ends at frame 70" in problems[0]
    problems, warnings = check_video(counter30, 61, 25.0, last_end=10)
    assert problems == [] and any("frame rate 30" in w for w in warnings) and any("numFrames=61" in w for w in warnings)


def test_faststart_mp4_truncated_in_its_data_is_caught(tmp_path):
    """With the index at the front, a cut file opens but its last frames cannot be decoded."""
    path = tmp_path / "front.mp4"
    with av.open(str(path), "w", format="mp4", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": "10", "threads": "1"}
        rng = np.random.default_rng(0)
        for _ in range(90):
            image = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    problems, _ = check_video(cut, 90, 30.0, last_end=80)
    assert len(problems) == 1 and "cut.mp4" in problems[0]
