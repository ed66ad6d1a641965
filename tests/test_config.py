"""Configurations: the window's unit, files built on a base file, and the shipped paper readings."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mgtutor.config import ENCODER_STRIDE, ConfigError, DataConfig, load_config
from mgtutor.data.windows import split_windows
from mgtutor.model.encoder import STRIDE

REPO = Path(__file__).resolve().parents[1]


def differences(a, b) -> dict[str, tuple]:
    """``section.key -> (a's value, b's value)`` wherever two configurations differ."""
    found = {}
    for section in ("data", "model", "train", "eval"):
        for f in dataclasses.fields(getattr(a, section)):
            x, y = getattr(getattr(a, section), f.name), getattr(getattr(b, section), f.name)
            if x != y:
                found[f"{section}.{f.name}"] = (x, y)
    return found


def test_one_encoder_stride():
    assert STRIDE == ENCODER_STRIDE == 4


@pytest.mark.parametrize(
    ("values", "frames", "train_step", "test_step"),
    [
        ({"window": 128}, 128, 32, 128),
        ({"window": 128, "window_unit": "feature_steps"}, 512, 128, 512),
        ({"window": 64, "window_unit": "feature_steps", "train_stride": 8, "test_stride": 32}, 256, 32, 128),
        ({"window": 64, "train_stride": 8, "test_stride": 32}, 64, 8, 32),
        ({"window": 50, "window_unit": "feature_steps"}, 200, 50, 200),
    ],
)
def test_window_and_strides_in_frames_whatever_the_unit(values, frames, train_step, test_step):
    cfg = DataConfig(**values)
    assert (cfg.window_frames, cfg.train_step, cfg.test_step) == (frames, train_step, test_step)


def test_feature_step_windows_are_cut_four_times_longer():
    class Sequence:
        sample, num_frames, fps, gestures = 1, 3000, 30.0, []  # 100 s at 30 fps: 1000 frames at 10 fps

    frames = split_windows([Sequence], DataConfig(window=32), "test")
    steps = split_windows([Sequence], DataConfig(window=8, window_unit="feature_steps"), "test")
    assert [(w.start, w.size) for w in frames] == [(w.start, w.size) for w in steps]
    assert {w.size for w in steps} == {32}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"window_unit": "seconds"}, "data.window_unit must be one of ('frames', 'feature_steps'), got 'seconds'"),
        ({"window": 30}, "data.window must be a positive multiple of 4 frames"),
        ({"window": 0, "window_unit": "feature_steps"}, "data.window must be positive"),
    ],
)
def test_bad_windows_name_the_key(values, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        DataConfig(**values)


def test_the_paper_in_both_readings():
    frames = load_config(REPO / "configs" / "smg_paper.yaml")
    steps = load_config(REPO / "configs" / "smg_paper_feature_steps.yaml")
    assert (frames.data.window, frames.data.window_unit, frames.data.window_frames) == (128, "frames", 128)
    assert (steps.data.window, steps.data.window_unit, steps.data.window_frames) == (128, "feature_steps", 512)
    assert (steps.data.train_step, steps.data.test_step) == (128, 512)
    # nothing else differs but where the run is written
    assert differences(frames, steps) == {
        "data.window_unit": ("frames", "feature_steps"),
        "train.out": ("runs/smg_paper", "runs/smg_paper_feature_steps"),
    }


def test_the_shipped_configurations_state_the_open_choices():
    for name in ("smg_paper.yaml", "cpu_demo.yaml"):
        text = (REPO / "configs" / name).read_text()
        for key in ("window_unit:", "initial_points:", "aux_layers:"):
            assert key in text, f"configs/{name} does not state {key}"
    paper = load_config(REPO / "configs" / "smg_paper.yaml")
    assert (paper.model.initial_points, paper.train.aux_loss, paper.train.aux_layers) == ("middle", True, "all")


def test_a_base_file_is_read_first_and_overridden_key_by_key(tmp_path):
    (tmp_path / "base.yaml").write_text("model:\n  hidden: 64\n  heads: 4\ntrain:\n  lr: 0.5\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "child.yaml").write_text("base: ../base.yaml\nmodel:\n  heads: 8\n")
    cfg = load_config(tmp_path / "sub" / "child.yaml", ["train.epochs=3"])
    assert (cfg.model.hidden, cfg.model.heads, cfg.train.lr, cfg.train.epochs) == (64, 8, 0.5, 3)


def test_base_mistakes_are_named(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    with pytest.raises(ConfigError, match="leads back to itself"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ConfigError, match="cannot read configuration file .*missing.yaml"):
        load_config(tmp_path / "c.yaml")
    (tmp_path / "d.yaml").write_text("base: [a.yaml]\n")
    with pytest.raises(ConfigError, match="base must be the path"):
        load_config(tmp_path / "d.yaml")
