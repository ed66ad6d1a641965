"""Named configurations: one dataclass tree, loaded from YAML and overridden with ``key=value``.

Every run of mgtutor (the CPU demo, the paper's SMG setup, a benchmark) is a :class:`Config`.
``configs/*.yaml`` hold the named ones (a file may name a ``base:`` file and state only what differs
from it); the command line changes single values with
``--set model.mamba_blocks=0``. A wrong key or a value of the wrong type is refused with an error
naming the key, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A configuration value or key that mgtutor cannot use; the message names the key."""


ENCODER_STRIDE = 4  # frames a feature step: both encoders' temporal stride (mgtutor.model.encoder.STRIDE)

# What data.window counts. The paper (section 4.2) gives "window size 128 frames"; PointTAD's code, on
# which the authors built, counts its window_size in feature steps of 4 frames (datasets/dataset.py:
# a window holds window_size * interval frames). docs/fidelity.md discusses both readings.
WINDOW_UNITS = ("frames", "feature_steps")


@dataclass
class DataConfig:
    """Where the sequences come from and how they are cut into windows (NOTES.md sections 2-3)."""

    root: str | None = None  # an SMG-format root; None means a synthetic set made under synthetic_dir
    cache: str | None = None  # frame cache written by `mgtutor prepare` (None: decode on the fly)
    features: str | None = None  # precomputed encoder features (used when model.encoder == "features")
    train_subjects: list[int] = field(default_factory=lambda: list(range(1, 36)))
    test_subjects: list[int] = field(default_factory=lambda: list(range(36, 41)))
    fps: float = 10.0  # target frame rate the model sees
    window: int = 128  # window length, counted in window_unit
    window_unit: str = "frames"  # "frames" at data.fps (the paper's words) or "feature_steps" (PointTAD's window_size)
    train_stride: int | None = None  # in window_unit; None: window // 4 (75% overlap)
    test_stride: int | None = None  # in window_unit; None: window (no overlap), plus an end-aligned last window
    short_side: int = 256  # frames are resized so their short side is this in the cache
    crop: int = 224  # training crop (random) and test crop (centre)
    flip: bool = False  # some micro-gestures are side-specific, so no flips by default
    jitter: float = 0.1  # photometric jitter strength for training
    num_workers: int = 0
    # synthetic set, used when root is None
    synthetic_dir: str = "data/synthetic"
    synthetic_sequences: int = 40
    synthetic_seconds: float = 90.0
    synthetic_size: int = 128
    synthetic_fps: float = 30.0
    synthetic_seed: int = 0
    synthetic_difficulty: str = "demo"  # "demo" or "hard"

    def __post_init__(self) -> None:
        if self.window_unit not in WINDOW_UNITS:
            raise ConfigError(f"data.window_unit must be one of {WINDOW_UNITS}, got {self.window_unit!r}")
        if self.window_unit == "frames" and (self.window < ENCODER_STRIDE or self.window % ENCODER_STRIDE):
            raise ConfigError(
                f"data.window must be a positive multiple of {ENCODER_STRIDE} frames (the encoder's stride), "
                f"got {self.window}; or count it in feature steps with data.window_unit: feature_steps"
            )
        if self.window <= 0:
            raise ConfigError(f"data.window must be positive, got {self.window}")
        if self.fps <= 0:
            raise ConfigError(f"data.fps must be positive, got {self.fps}")
        for key in ("train_stride", "test_stride"):
            value = getattr(self, key)
            if value is not None and value <= 0:
                raise ConfigError(f"data.{key} must be positive, got {value}")
        if self.synthetic_difficulty not in ("demo", "hard"):
            raise ConfigError(f"data.synthetic_difficulty must be 'demo' or 'hard', got {self.synthetic_difficulty!r}")

    @property
    def frames_per_unit(self) -> int:
        """Frames (at ``fps``) in one unit of ``window`` and the strides: 1, or the encoder's stride."""
        return ENCODER_STRIDE if self.window_unit == "feature_steps" else 1

    @property
    def window_frames(self) -> int:
        """The window's length in frames at ``fps``, whatever ``window_unit`` counts."""
        return self.window * self.frames_per_unit

    @property
    def train_step(self) -> int:
        """Frames between training windows' starts: ``train_stride``, or a quarter window."""
        return self.train_stride * self.frames_per_unit if self.train_stride else self.window_frames // 4

    @property
    def test_step(self) -> int:
        """Frames between test windows' starts: ``test_stride``, or a whole window."""
        return self.test_stride * self.frames_per_unit if self.test_stride else self.window_frames


@dataclass
class ModelConfig:
    """The detector: PointTAD's decoder with the self-attention optionally replaced by Mamba-MHSA."""

    encoder: str = "i3d"  # "i3d" (Inception-I3D RGB), "small" (CPU encoder), "features" (precomputed)
    encoder_weights: str | None = None  # converted I3D weights (safetensors); None: random init
    freeze_encoder: bool = False
    encoder_lr_scale: float = 0.1  # PointTAD trains the backbone with a 10x smaller learning rate
    feature_dim: int = 1024  # channels of precomputed features (encoder == "features")
    num_classes: int = 17  # SMG: 16 micro-gestures + "non-micro-gesture"
    hidden: int = 512
    queries: int = 48
    points: int = 30
    layers: int = 4
    heads: int = 8
    dropout: float = 0.1
    ffn: int = 2048
    mix_dim: int = 64  # inner width of the dynamic channel mix (512 -> 64 -> 512)
    subpoints: int = 4  # deformable sub-points per query point
    boundary_points: int = 4  # points with their own deformable head
    mamba_blocks: int = 2  # N_m; 0 gives PointTAD's plain self-attention
    query_order: str = "given"  # "given" (the paper), "centre" (sorted by segment centre), "bidirectional"
    initial_points: str = "middle"  # "middle" (the paper, PointTAD: all at 0.5), "spread" (one segment a query)
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    mamba_backend: str = "torch"  # "torch", "mamba_ssm" (fused CUDA kernels), "auto"
    dense_head: bool = True

    def __post_init__(self) -> None:
        choices = {
            "encoder": ("i3d", "small", "features"),
            "query_order": ("given", "centre", "bidirectional"),
            "initial_points": ("middle", "spread"),
            "mamba_backend": ("torch", "mamba_ssm", "auto"),
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ConfigError(f"model.{key} must be one of {allowed}, got {getattr(self, key)!r}")
        for key in ("hidden", "queries", "points", "layers", "heads", "ffn", "mix_dim", "subpoints", "num_classes"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"model.{key} must be positive, got {getattr(self, key)}")
        if self.mamba_blocks < 0:
            raise ConfigError(f"model.mamba_blocks must be >= 0, got {self.mamba_blocks}")
        if self.hidden % self.heads:
            raise ConfigError(f"model.hidden ({self.hidden}) must be divisible by model.heads ({self.heads})")
        if self.points < 3:
            raise ConfigError(f"model.points must be >= 3 (two-thirds of them locate the segment), got {self.points}")
        if not 0 <= self.boundary_points <= self.points:
            raise ConfigError(f"model.boundary_points must lie in 0..model.points, got {self.boundary_points}")


AUX_LAYERS = ("all", "pointtad")


@dataclass
class TrainConfig:
    """Optimisation and the set-prediction loss (NOTES.md section 3; the paper's section 4.2)."""

    epochs: int = 50
    lr: float = 1e-4
    lr_step: int = 10  # epochs between halvings
    lr_gamma: float = 0.5
    weight_decay: float = 1e-4
    batch_size: int = 1
    clip_grad: float = 0.1
    amp: str = "bf16"  # "bf16" autocast on CUDA, "none"; CPU always runs float32
    tf32: bool = True
    seed: int = 0
    out: str = "runs/default"
    eval_every: int = 1  # epochs between evaluations on the test split (0: only at the end)
    monitor: str = "f1"  # evaluation figure (higher is better) that picks best.pt
    # loss weights
    class_weight: float = 1.0
    no_object_weight: float = 0.1
    l1_weight: float = 5.0
    iou_weight: float = 5.0
    dense_weight: float = 5.0
    aux_loss: bool = True  # losses on the decoder layers before the last (PointTAD's --aux_loss)
    aux_layers: str = "all"  # which of them when aux_loss: "all", or "pointtad" (its code's zip: the first b)
    # matching costs
    cost_class: float = 10.0
    cost_l1: float = 5.0
    cost_iou: float = 5.0
    max_steps: int | None = None  # stop after this many optimiser steps (benchmarks, smoke tests)

    def __post_init__(self) -> None:
        if self.amp not in ("bf16", "none"):
            raise ConfigError(f"train.amp must be 'bf16' or 'none', got {self.amp!r}")
        if self.aux_layers not in AUX_LAYERS:
            raise ConfigError(f"train.aux_layers must be one of {AUX_LAYERS}, got {self.aux_layers!r}")
        for key in ("epochs", "lr_step", "batch_size"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"train.{key} must be positive, got {getattr(self, key)}")
        if self.lr <= 0:
            raise ConfigError(f"train.lr must be positive, got {self.lr}")


@dataclass
class EvalConfig:
    """Turning per-query predictions into the challenge's detections (NOTES.md section 1)."""

    score_threshold: float | None = None  # None: chosen on the training split
    nms_iou: float | None = None  # per-class NMS threshold; None: chosen on the training split
    alpha: float = 0.3  # the challenge's overlap threshold
    one_to_one: bool = False  # strict matching instead of the organisers' rule


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_type(key: str, value: Any, annotation: Any) -> Any:
    """Return ``value`` converted to ``annotation`` when that is lossless, else raise ConfigError."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(key, value, arg)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: unexpected value {value!r}")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return [_check_type(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value)]
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} must be a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported type {annotation}")


def _section_from_dict(cls: type, name: str, values: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean '{name}.{close[0]}'?" if close else f"; known keys: {', '.join(names)}"
            raise ConfigError(f"unknown configuration key '{name}.{key}'{hint}")
        kwargs[key] = _check_type(f"{name}.{key}", value, hints[key])
    return cls(**kwargs)


def config_from_dict(values: dict[str, Any]) -> Config:
    """Build a Config from nested dicts, refusing unknown sections and keys."""
    sections = [f.name for f in dataclasses.fields(Config)]
    hints = typing.get_type_hints(Config)
    kwargs = {}
    for name, section in (values or {}).items():
        if name not in sections:
            raise ConfigError(f"unknown configuration section '{name}'; known sections: {', '.join(sections)}")
        if not isinstance(section, dict):
            raise ConfigError(f"configuration section '{name}' must be a mapping, got {section!r}")
        kwargs[name] = _section_from_dict(hints[name], name, section)
    return Config(**kwargs)


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"model.mamba_blocks=0"`` -> ("model", "mamba_blocks", 0); values are read as YAML scalars."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    if key.count(".") != 1:
        raise ConfigError(f"override key {key!r} must look like section.key (e.g. model.mamba_blocks)")
    section, name = key.split(".")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"value for {key} is not valid YAML: {raw!r} ({err})") from err
    return section, name, value


def _read_values(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The sections of a YAML configuration; a top-level ``base: other.yaml`` (relative to the file)
    is read first and this file's keys replace its keys one by one."""
    try:
        text = path.read_text()
    except OSError as err:
        raise ConfigError(f"cannot read configuration file {path}: {err.strerror}") from err
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (data, model, train, eval)")
    base = values.pop("base", None)
    if base is None:
        return values
    if not isinstance(base, str):
        raise ConfigError(f"{path}: base must be the path of another configuration file, got {base!r}")
    base_path = (path.parent / base).resolve()
    if base_path in chain:
        raise ConfigError(f"{path}: base {base} leads back to itself")
    merged = _read_values(base_path, (*chain, path.resolve()))
    for name, section in values.items():
        if isinstance(section, dict) and isinstance(merged.get(name), dict):
            merged[name] = {**merged[name], **section}
        else:
            merged[name] = section
    return merged


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML configuration (or the defaults when ``path`` is None) and apply ``key=value`` overrides.

    A file may start from another with ``base: other.yaml`` (a path relative to the file) and state only
    the keys it changes.
    """
    values = _read_values(Path(path)) if path is not None else {}
    return override_config(values, overrides)


def override_config(values: dict[str, Any], overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """A Config from nested dicts (e.g. the one a checkpoint holds) with ``key=value`` overrides applied."""
    values = {k: dict(v) if isinstance(v, dict) else v for k, v in values.items()}
    for text in overrides:
        section, name, value = parse_override(text)
        values.setdefault(section, {})
        if not isinstance(values[section], dict):
            raise ConfigError(f"configuration section '{section}' must be a mapping")
        values[section][name] = value
    return config_from_dict(values)


def save_config(config: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
