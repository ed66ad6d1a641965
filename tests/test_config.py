"""mgtutor.config: every value checked on construction, Literal choices owned by the code that uses them,
finite numbers, the subjects of each split; the table of differences notebooks print between two configurations;
configuration files that name a ``base:`` state only what
differs, and are refused clearly when the base is missing, not a path, or leads back to itself."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest
import yaml

from mgtutor.config import (
    SPLITS,
    Config,
    ConfigError,
    DataConfig,
    EvalConfig,
    ModelConfig,
    TrainConfig,
    _field_types,
    config_from_dict,
    PATH_KEYS,
    config_differences,
    format_config_differences,
    load_config,
    save_config,
)
from mgtutor.data.augment import KINDS as AUGMENT_KINDS
from mgtutor.data.smg import TEST_SUBJECTS, TRAIN_SUBJECTS
from mgtutor.data.synthetic import DIFFICULTIES
from mgtutor.data.windows import FEATURE_STRIDE, split_windows
from mgtutor.eval.pipeline import ChooseOn
from mgtutor.model.encoder import ENCODERS, STRIDE
from mgtutor.model.mamba_mhsa import ORDERS
from mgtutor.model.query_points import INITIAL_POINTS
from mgtutor.ssm.mamba import BACKENDS
from mgtutor.train.engine import AmpMode
from mgtutor.train.losses import AUX_LAYERS

SECTIONS = (DataConfig, ModelConfig, TrainConfig, EvalConfig)


def test_allowed_values_are_the_literals_of_the_code_that_uses_them():
    choices = {
        (ModelConfig, "encoder"): ENCODERS,
        (ModelConfig, "query_order"): ORDERS,
        (ModelConfig, "mamba_backend"): BACKENDS,
        (TrainConfig, "amp"): typing.get_args(AmpMode),
        (DataConfig, "synthetic_difficulty"): DIFFICULTIES,
        (DataConfig, "augment"): AUGMENT_KINDS,
        (DataConfig, "window_unit"): ("frames", "feature_steps"),
        (ModelConfig, "initial_points"): INITIAL_POINTS,
        (TrainConfig, "aux_layers"): AUX_LAYERS,
        (EvalConfig, "choose_on"): typing.get_args(ChooseOn),
    }
    for (section, key), allowed in choices.items():
        assert typing.get_args(_field_types(section)[key]) == allowed, key
    assert ENCODERS == ("i3d", "small", "features") and typing.get_args(ChooseOn) == ("train", "val")
    assert SPLITS == ("train", "val", "test", "all")
    with pytest.raises(ConfigError, match="model.query_order must be 'given', 'centre' or 'bidirectional', got 'random'"):
        config_from_dict({"model": {"query_order": "random"}})
    # the same check when a section is built in Python, and on every dataclasses.replace
    with pytest.raises(ConfigError, match="model.encoder must be 'i3d', 'small' or 'features', got 'resnet'"):
        ModelConfig(encoder="resnet")
    with pytest.raises(ConfigError, match="train.amp must be 'bf16' or 'none'"):
        dataclasses.replace(TrainConfig(), amp="fp16")


def test_facts_stated_once():
    assert STRIDE == FEATURE_STRIDE == 4
    assert DataConfig().train_subjects == list(TRAIN_SUBJECTS) and DataConfig().test_subjects == list(TEST_SUBJECTS)
    with pytest.raises(ConfigError, match=f"data.window must be a positive multiple of {FEATURE_STRIDE}"):
        DataConfig(window=30)


def _float_keys():
    for section in SECTIONS:
        for f in dataclasses.fields(section):
            if float in (_field_types(section)[f.name], *typing.get_args(_field_types(section)[f.name])):
                yield section.section, f.name


@pytest.mark.parametrize(("section", "key"), list(_float_keys()))
@pytest.mark.parametrize("value", ["nan", ".nan", ".inf", "-.inf"])
def test_no_number_may_be_nan_or_infinite(section, key, value):
    # nan passes every range check (nan < 0 is False): train.clip_grad=nan silently turned clipping off
    with pytest.raises(ConfigError, match=rf"{section}\.{key} must be a finite number"):
        load_config(None, [f"{section}.{key}={value}"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.clip_grad=-0.1", "train.clip_grad must be >= 0"),
        ("train.weight_decay=-1", "train.weight_decay must be >= 0"),
        ("train.lr=0", "train.lr must be positive"),
        ("train.lr_gamma=2", "train.lr_gamma must lie in (0, 1]"),
        ("train.seed=-1", "train.seed must be >= 0"),
        ("train.max_steps=0", "train.max_steps must be >= 1"),
        ("data.short_side=0", "data.short_side must be a whole number of pixels from 1 to 4096"),
        ("data.fps=0", "data.fps must be a frame rate from 1 to 1000"),
        ("data.synthetic_fps=5000", "data.synthetic_fps must be a frame rate from 1 to 1000"),
        ("data.crop=0", "data.crop must be >= 1"),
        ("model.dropout=1", "model.dropout must lie in [0, 1)"),
        ("eval.score_threshold=1.5", "eval.score_threshold must lie in [0, 1]"),
        ("eval.nms_iou=-0.1", "eval.nms_iou must lie in [0, 1]"),
        ("data.train_subjects=[0,1]", "data.train_subjects must hold subject ids >= 1"),
    ],
)
def test_values_that_make_no_sense_are_refused_by_key(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    assert message in str(err.value)


def test_validation_subjects_are_held_out_of_training():
    cfg = load_config(None, ["data.train_subjects=[1,2,3,4,5]", "data.val_subjects=[4,5]", "data.test_subjects=[6]"])
    assert cfg.data.subjects("train") == [1, 2, 3] and cfg.data.subjects("val") == [4, 5]
    assert cfg.data.subjects("test") == [6] and cfg.data.subjects("all") is None
    assert cfg.eval.choose_on == "train"  # the default chooses on what training fitted, as before
    assert load_config(None).data.subjects("val") == [] and load_config(None).data.subjects("train") == list(TRAIN_SUBJECTS)
    with pytest.raises(ConfigError, match=r"data.val_subjects must be a part of data.train_subjects .* \[7\]"):
        load_config(None, ["data.train_subjects=[1,2]", "data.val_subjects=[7]"])
    with pytest.raises(ConfigError, match="data.val_subjects holds every training subject"):
        load_config(None, ["data.train_subjects=[1,2]", "data.val_subjects=[1,2]"])
    with pytest.raises(ConfigError, match="eval.choose_on is 'val' but data.val_subjects is empty"):
        Config(eval=EvalConfig(choose_on="val"))
    # with a configured threshold nothing is chosen, so no validation subjects are needed
    assert Config(eval=EvalConfig(choose_on="val", score_threshold=0.5)).eval.choose_on == "val"
    with pytest.raises(ValueError, match="split must be one of"):
        cfg.data.subjects("dev")


def test_precomputed_features_need_strides_in_feature_steps():
    with pytest.raises(ConfigError, match="data.test_stride \\(30\\) must be a multiple of 4"):
        config_from_dict({"model": {"encoder": "features"}, "data": {"test_stride": 30}})
    assert config_from_dict({"model": {"encoder": "small"}, "data": {"test_stride": 30}}).data.test_step == 30


def test_yaml_errors_are_one_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("train: [epochs\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "bad.yaml")
    assert "\n" not in str(err.value) and "bad.yaml is not valid YAML" in str(err.value)


REPO = Path(__file__).resolve().parents[1]


def write(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def test_a_base_is_overridden_key_by_key_and_chains(tmp_path):
    write(tmp_path / "a.yaml", {"data": {"window": 64, "crop": 112}, "train": {"lr": 0.5, "epochs": 3}})
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "b.yaml", {"base": "../a.yaml", "data": {"crop": 96}, "model": {"hidden": 64}})
    c = write(tmp_path / "sub" / "c.yaml", {"base": "b.yaml", "train": {"epochs": 7}})
    config = load_config(c, ["data.window=32"])
    assert (config.data.window, config.data.crop, config.model.hidden) == (32, 96, 64)
    assert (config.train.lr, config.train.epochs) == (0.5, 7)
    # what a run saves is the whole configuration, loadable without its bases
    save_config(config, tmp_path / "saved.yaml")
    assert "base" not in yaml.safe_load((tmp_path / "saved.yaml").read_text())
    assert load_config(tmp_path / "saved.yaml") == config


def test_bad_bases_are_refused_with_the_file_named(tmp_path):
    write(tmp_path / "loop_a.yaml", {"base": "loop_b.yaml"})
    write(tmp_path / "loop_b.yaml", {"base": "loop_a.yaml"})
    with pytest.raises(ConfigError, match="loop_b.yaml: 'base: loop_a.yaml' leads back"):
        load_config(tmp_path / "loop_a.yaml")
    with pytest.raises(ConfigError, match="cannot read configuration file .*missing.yaml"):
        load_config(write(tmp_path / "x.yaml", {"base": "missing.yaml"}))
    with pytest.raises(ConfigError, match="'base' must be the path of another configuration file"):
        load_config(write(tmp_path / "y.yaml", {"base": 3}))
    with pytest.raises(ConfigError, match="unknown configuration key 'data.crpo'"):
        load_config(write(tmp_path / "z.yaml", {"base": str(REPO / "configs" / "smg_paper.yaml"), "data": {"crpo": 1}}))


def test_the_shipped_configurations_load():
    for path in sorted((REPO / "configs").glob("*.yaml")):
        load_config(path)


def test_differences_name_every_differing_key_in_declaration_order():
    small = config_from_dict({"model": {"layers": 2, "hidden": 64}, "train": {"lr": 3e-3}, "data": {"window": 64}})
    default = config_from_dict({})
    assert config_differences({"small": small, "default": default}) == [
        ("data.window", (64, 128)),
        ("model.hidden", (64, 512)),
        ("model.layers", (2, 4)),
        ("train.lr", (3e-3, 1e-4)),
    ]
    assert config_differences({"a": default, "b": config_from_dict({})}) == []
    three = config_differences({"a": small, "b": default, "c": default})
    assert ("model.layers", (2, 4, 4)) in three


def test_file_locations_are_left_out_unless_asked():
    here = config_from_dict({"data": {"root": "/here", "features": "/here/f"}, "train": {"out": "/here/run"}, "model": {"points": 9}})
    there = config_from_dict({"data": {"root": "/there"}, "train": {"out": "/there/run"}})
    assert [name for name, _ in config_differences({"a": here, "b": there})] == ["model.points"]
    assert "data.root" in PATH_KEYS
    everything = [name for name, _ in config_differences({"a": here, "b": there}, ignore=())]
    assert everything == ["data.root", "data.features", "model.points", "train.out"]


def test_table_has_a_column_a_configuration_and_ranges_for_subjects():
    paper = load_config(REPO / "configs" / "smg_paper.yaml")
    demo = load_config(REPO / "configs" / "cpu_demo.yaml", ["data.test_subjects=[36, 37, 39]"])
    table = format_config_differences({"cpu demo": demo, "the paper": paper}).splitlines()
    assert table[0].split() == ["key", "cpu", "demo", "the", "paper"]
    rows = {line.split()[0]: line.split()[1:] for line in table[2:]}
    assert rows["model.hidden"] == ["128", "512"]
    assert rows["train.lr"] == ["0.002", "0.0001"]
    assert rows["data.test_subjects"] == ["36-37,", "39", "36-40"]
    assert "data.root" not in rows and "data.train_subjects" not in rows  # a path; equal lists
    assert format_config_differences({"a": paper, "b": paper}).startswith("no differences")


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
        ({"window_unit": "seconds"}, "data.window_unit must be 'frames' or 'feature_steps', got 'seconds'"),
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
    assert dict(config_differences({"frames": frames, "feature steps": steps}, ignore=())) == {
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
