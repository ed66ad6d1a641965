"""Online recognition equals the offline path, for every way a stream can end, and reports early.

Two models: a stub whose outputs are a seeded function of the window it is shown (the window's first
original frame is written into the pixels), so every stream length can be checked against the offline
rule in milliseconds; and a tiny real detector on a synthetic video, through the real decoding and
dataset, against :func:`mgtutor.eval.inference.predict_sequences`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from mgtutor.config import ConfigError, config_from_dict
from mgtutor.data.smg import load_root
from mgtutor.data.synthetic import write_synthetic
from mgtutor.data.video import iter_frames
from mgtutor.data.windows import num_sampled, original_frame, window_starts
from mgtutor.eval.inference import predict_sequences
from mgtutor.eval.online import OnlineRecognizer, recognize_video
from mgtutor.eval.postprocess import apply_postprocessing, filter_detections, merge_windows, meta_to_frames, window_detections
from mgtutor.model.detector import Detector, DetectorOutput

SOURCE_FPS = 30.0
QUERIES = 6
CLASSES = 4


def stub_outputs(first_frame: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded logits (q, k + 1) and segments (q, 2) for the window whose first frame is ``first_frame``:
    segments anywhere in (and a little outside) the window, many near its end, where merging is subtle."""
    rng = np.random.default_rng(first_frame)
    logits = rng.normal(0, 2, (QUERIES, CLASSES + 1))
    logits[:, :2] += 1.5  # two frequent classes, so NMS has same-class overlaps to settle
    start = rng.uniform(-0.1, 1.0, QUERIES)
    start[: QUERIES // 2] = rng.uniform(0.6, 1.0, QUERIES // 2)
    end = start + rng.uniform(0.0, 0.5, QUERIES)
    return torch.tensor(logits, dtype=torch.float32), torch.tensor(np.stack([start, end], -1), dtype=torch.float32)


class StubDetector(nn.Module):
    """Reads the original frame number the clip starts with from its pixels and answers stub_outputs."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the recognizer a device

    def forward(self, clip: torch.Tensor) -> DetectorOutput:
        first = round((clip[0, 0, 0, 0, 0].item() + 1) * 127.5)
        logits, segments = stub_outputs(first)
        return DetectorOutput(logits[None, None], segments[None, None], torch.zeros(2, 1, QUERIES, 3), None)


def stub_config(**eval_cfg):
    return config_from_dict({
        "data": {"fps": 10.0, "window": 8, "short_side": 6, "crop": 4},
        "model": {"encoder": "small", "num_classes": CLASSES},
        "eval": {"score_threshold": 0.3, **eval_cfg},
    })  # fmt: skip


def stub_offline(num_frames: int, cfg) -> list:
    """The offline path for a video of ``num_frames`` frames, written out with the library's pieces."""
    length = num_sampled(num_frames, SOURCE_FPS, cfg.data.fps)
    windows = []
    for start in window_starts(length, cfg.data.window, cfg.data.test_step):
        meta = {"start": start, "window": cfg.data.window, "fps": cfg.data.fps, "source_fps": SOURCE_FPS, "num_frames": num_frames}
        logits, segments = stub_outputs(original_frame(start, SOURCE_FPS, cfg.data.fps))
        windows.append(window_detections(logits, segments, meta_to_frames(meta)))
    return filter_detections(merge_windows(windows), cfg.eval.score_threshold, cfg.eval.nms_iou)


def stub_stream(num_frames: int, cfg) -> OnlineRecognizer:
    recognizer = OnlineRecognizer(StubDetector(), cfg, SOURCE_FPS)
    for n in range(num_frames):
        recognizer.push(np.full((6, 8, 3), n, dtype=np.uint8))  # the frame number in every pixel
    recognizer.finish()
    return recognizer


def by_position(detections):
    return sorted(detections, key=lambda d: (d.start, d.end, d.label))



@pytest.mark.parametrize("nms_iou", [None, 0.2])
def test_every_stream_length_gives_the_offline_detections(nms_iou):
    cfg = stub_config(nms_iou=nms_iou)
    window_frames = cfg.data.window * 3  # 24 original frames a window at 30 -> 10 fps
    early = 0
    for num_frames in range(1, 4 * window_frames + 3):  # shorter than a window, on and off every boundary
        recognizer = stub_stream(num_frames, cfg)
        expected = stub_offline(num_frames, cfg)
        assert by_position(recognizer.detections) == expected, num_frames
        early += sum(r.reported_frame < num_frames - 1 for r in recognizer.reported)
        for report in recognizer.reported:
            assert report.detection.end <= report.reported_frame <= num_frames - 1
            assert report.delay_seconds == pytest.approx((report.reported_frame - report.detection.end) / SOURCE_FPS)
    assert early > 100  # most detections come out before the stream ends


def test_detections_near_a_window_end_wait_for_the_end_aligned_window():
    """Without NMS, a detection in the first half of its window is reported the moment the window is
    complete; one near the end waits, because an end-aligned window may still take it."""
    cfg = stub_config()
    recognizer = OnlineRecognizer(StubDetector(), cfg, SOURCE_FPS)
    completed = original_frame(cfg.data.window - 1, SOURCE_FPS, cfg.data.fps)  # last frame of window 0
    for n in range(completed + 1):
        recognizer.push(np.full((6, 8, 3), n, dtype=np.uint8))
    at_completion = list(recognizer.detections)
    centres = [(d.start + d.end) / 2 for d in at_completion]
    assert at_completion and max(centres) < 12  # the first half of frames 0..23
    for n in range(completed + 1, 3 * completed):
        recognizer.push(np.full((6, 8, 3), n, dtype=np.uint8))
    later = recognizer.reported[len(at_completion) :]
    assert any(r.detection.start < 24 and r.reported_frame > completed for r in later)
    assert all(r.delay_seconds >= 0 for r in recognizer.reported)


def test_input_checks():
    cfg = stub_config()
    recognizer = OnlineRecognizer(StubDetector(), cfg, SOURCE_FPS)
    with pytest.raises(ValueError, match="short side"):
        recognizer.push(np.zeros((12, 16, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        recognizer.push(np.zeros((6, 8, 3), np.float32))
    recognizer.push(np.zeros((6, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="shape"):
        recognizer.push(np.zeros((6, 9, 3), np.uint8))
    recognizer.finish()
    with pytest.raises(RuntimeError, match="finish"):
        recognizer.push(np.zeros((6, 8, 3), np.uint8))
    with pytest.raises(ConfigError, match="features"):
        OnlineRecognizer(StubDetector(), dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, encoder="features")), SOURCE_FPS)
    with pytest.raises(ValueError, match="score_threshold"):
        OnlineRecognizer(StubDetector(), stub_config(score_threshold=None), SOURCE_FPS)


# -- a real detector on a synthetic video ------------------------------------------------------------


@pytest.fixture(scope="module")
def video_setup(tmp_path_factory):
    root = write_synthetic(tmp_path_factory.mktemp("online") / "smg", sequences=1, seconds=10, size=40, seed=3, workers=1)
    cfg = config_from_dict({
        "data": {"root": str(root), "window": 16, "short_side": 40, "crop": 32},
        "model": {"encoder": "small", "hidden": 32, "queries": 8, "points": 9, "layers": 2, "heads": 4, "ffn": 64,
                  "mix_dim": 8, "mamba_blocks": 1},
        "eval": {"score_threshold": 0.14},
    })  # fmt: skip
    torch.manual_seed(0)
    model = Detector(cfg.model).eval()
    with torch.no_grad():  # spread the initial query points, so queries find different segments
        lo = torch.rand(cfg.model.queries, 1) * 0.9
        model.query_points.weight.copy_(lo + torch.rand(cfg.model.queries, cfg.model.points) * 0.3)
    sequence = load_root(root)[0]
    raw = predict_sequences(model, [sequence], cfg, "cpu", batch_size=1)[sequence.sample]
    return cfg, model, sequence, raw


@pytest.mark.parametrize("nms_iou", [None, 0.3])
def test_a_streamed_video_gives_the_offline_detections(video_setup, nms_iou):
    cfg, model, sequence, raw = video_setup
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, nms_iou=nms_iou))
    recognizer = OnlineRecognizer(model, cfg, sequence.fps)
    streamed = []
    for _, frame in iter_frames(sequence.video, sequence.fps, sequence.fps, short_side=cfg.data.short_side):
        streamed.extend(recognizer.push(frame))
    before_end = len(streamed)
    streamed.extend(recognizer.finish())

    offline = apply_postprocessing({1: raw}, cfg.eval)[1]
    assert recognizer.frames_seen == sequence.num_frames
    length = num_sampled(sequence.num_frames, sequence.fps, cfg.data.fps)
    assert sorted(recognizer.windows_run) == window_starts(length, cfg.data.window, cfg.data.test_step)
    assert 5 <= len(offline) < len(raw)  # the threshold keeps some, not all
    assert by_position(r.detection for r in streamed) == offline
    assert before_end > len(offline) // 2
    window_seconds = cfg.data.window / cfg.data.fps
    for report in streamed:
        assert report.delay_seconds >= 0
        if nms_iou is None:
            assert report.delay_seconds < window_seconds + 1 / sequence.fps
    if nms_iou is None:  # the generator over a file gives the same reports
        assert list(recognize_video(model, cfg, sequence.video)) == streamed
