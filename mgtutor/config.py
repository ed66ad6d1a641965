"""Named configurations: one dataclass tree, loaded from YAML and overridden with ``key=value``.

Every run of mgtutor (the CPU demo, the paper's SMG setup, a benchmark) is a :class:`Config`.
``configs/*.yaml`` hold the named ones; a file may start from another with ``base: other.yaml`` (a path
relative to the file) and state only the values that differ; the command line changes single values with
``--set model.mamba_blocks=0``. A wrong key or a value of the wrong type is refused with an error
naming the key, never silently ignored.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import yaml

from mgtutor.data.smg import TEST_SUBJECTS, TRAIN_SUBJECTS
from mgtutor.data.windows import FEATURE_STRIDE, check_frame_rate
from mgtutor.files import write_atomic

if TYPE_CHECKING:  # resolved at run time by _field_types
    from mgtutor.data.augment import AugmentKind
    from mgtutor.model.query_points import InitialPoints
    from mgtutor.train.losses import AuxLayers
    from mgtutor.data.synthetic import DifficultyName
    from mgtutor.eval.pipeline import ChooseOn
    from mgtutor.model.encoder import EncoderKind
    from mgtutor.model.mamba_mhsa import QueryOrder
    from mgtutor.ssm.mamba import Backend
    from mgtutor.train.engine import AmpMode


class ConfigError(ValueError):
    """A configuration value or key that mgtutor cannot use; the message names the key."""


Split = Literal["train", "val", "test", "all"]  # the parts of a root DataConfig.subjects names
SPLITS: tuple[str, ...] = typing.get_args(Split)


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """The annotated type of each field of a section. The Literal types of allowed values live in the
    modules that act on them and are imported here only when a section is first checked, so importing
    mgtutor.config stays light (and those modules may import it)."""
    from mgtutor.data.augment import AugmentKind
    from mgtutor.data.synthetic import DifficultyName
    from mgtutor.eval.pipeline import ChooseOn
    from mgtutor.model.encoder import EncoderKind
    from mgtutor.model.mamba_mhsa import QueryOrder
    from mgtutor.ssm.mamba import Backend
    from mgtutor.model.query_points import InitialPoints
    from mgtutor.train.engine import AmpMode
    from mgtutor.train.losses import AuxLayers

    names = {"AugmentKind": AugmentKind, "InitialPoints": InitialPoints, "AuxLayers": AuxLayers, "WindowUnit": WindowUnit, "DifficultyName": DifficultyName, "ChooseOn": ChooseOn, "EncoderKind": EncoderKind,
             "QueryOrder": QueryOrder, "Backend": Backend, "AmpMode": AmpMode, "Split": Split}  # fmt: skip
    return typing.get_type_hints(cls, localns=names)


class _Section:
    """A section of the configuration: on construction (from YAML, ``--set`` or Python, and on every
    ``dataclasses.replace``) each value is checked against its field's type by :func:`_check_type`,
    then :meth:`check` tests the ranges; errors name the key, e.g. ``train.lr``."""

    section: ClassVar[str]

    def __post_init__(self) -> None:
        types_ = _field_types(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            setattr(self, f.name, _check_type(f"{self.section}.{f.name}", getattr(self, f.name), types_[f.name]))
        self.check()

    def check(self) -> None:
        """Refuse values of the right type that make no sense (ConfigError naming the key)."""

    def _at_least(self, low: float, *keys: str) -> None:
        for key in keys:
            value = getattr(self, key)
            if value is not None and value < low:
                raise ConfigError(f"{self.section}.{key} must be >= {low:g}, got {value}")

    def _between(self, low: float, high: float, *keys: str) -> None:
        for key in keys:
            value = getattr(self, key)
            if value is not None and not low <= value <= high:
                raise ConfigError(f"{self.section}.{key} must lie in [{low:g}, {high:g}], got {value}")


# What data.window counts. The paper (section 4.2) gives "window size 128 frames"; PointTAD's code, on
# which the authors built, counts its window_size in feature steps of 4 frames (datasets/dataset.py:
# a window holds window_size * interval frames). docs/fidelity.md discusses both readings.
WindowUnit = Literal["frames", "feature_steps"]
WINDOW_UNITS: tuple[str, ...] = typing.get_args(WindowUnit)


@dataclass
class DataConfig(_Section):
    """Where the sequences come from and how they are cut into windows (docs/reference.md, sections 2-3).

    The subjects: training fits ``train_subjects`` less ``val_subjects``; ``val_subjects`` (a part of the
    training subjects, none by default) are held out of training so that the score threshold and NMS
    can be chosen on subjects the model has not seen (``eval.choose_on: val``); ``test_subjects`` are
    only ever scored. :meth:`subjects` maps a split's name to its subjects.
    """

    section: ClassVar[str] = "data"

    root: str | None = None  # an SMG-format root; None means a synthetic set made under synthetic_dir
    cache: str | None = None  # frame cache written by `mgtutor prepare` (None: decode on the fly)
    features: str | None = None  # precomputed encoder features (used when model.encoder == "features")
    train_subjects: list[int] = field(default_factory=lambda: list(TRAIN_SUBJECTS))
    val_subjects: list[int] = field(default_factory=list)  # training subjects held out of training
    test_subjects: list[int] = field(default_factory=lambda: list(TEST_SUBJECTS))
    fps: float = 10.0  # target frame rate the model sees
    window: int = 128  # window length, counted in window_unit
    window_unit: WindowUnit = "frames"  # "frames" at data.fps (the paper's words) or "feature_steps" (PointTAD's window_size)
    train_stride: int | None = None  # in window_unit; None: window // 4 (75% overlap)
    test_stride: int | None = None  # in window_unit; None: window (no overlap), plus an end-aligned last window
    short_side: int = 256  # frames are resized so their short side is this in the cache
    crop: int = 224  # training crop (random) and test crop (centre)
    flip: bool = False  # some micro-gestures are side-specific, so no flips by default
    augment: AugmentKind = "jitter"  # training augmentation: "jitter" (mgtutor's) or "pointtad" (PointTAD's distortion + rotation)
    jitter: float = 0.1  # photometric jitter strength for training (augment: jitter)
    num_workers: int = 0
    # synthetic set, used when root is None
    synthetic_dir: str = "data/synthetic"
    synthetic_sequences: int = 40
    synthetic_seconds: float = 90.0
    synthetic_size: int = 128
    synthetic_fps: float = 30.0
    synthetic_seed: int = 0
    synthetic_difficulty: DifficultyName = "demo"

    def check(self) -> None:
        if self.window <= 0:
            raise ConfigError(f"data.window must be positive, got {self.window}")
        if self.window_unit == "frames" and self.window % FEATURE_STRIDE:
            raise ConfigError(
                f"data.window must be a positive multiple of {FEATURE_STRIDE} frames (the encoder's stride), "
                f"got {self.window}; or count it in feature steps with data.window_unit: feature_steps"
            )
        for key in ("fps", "synthetic_fps"):
            try:
                check_frame_rate(getattr(self, key), f"data.{key}")
            except ValueError as err:
                raise ConfigError(str(err)) from None
        from mgtutor.data.cache import check_short_side

        try:
            check_short_side(self.short_side, "data.short_side")
        except ValueError as err:
            raise ConfigError(str(err)) from None
        self._at_least(1, "train_stride", "test_stride", "crop", "synthetic_sequences", "synthetic_size")
        self._at_least(0, "jitter", "num_workers", "synthetic_seed")
        for key in ("train_subjects", "val_subjects", "test_subjects"):
            if any(subject < 1 for subject in getattr(self, key)):
                raise ConfigError(f"data.{key} must hold subject ids >= 1, got {getattr(self, key)}")
        outside = sorted(set(self.val_subjects) - set(self.train_subjects))
        if outside:
            raise ConfigError(f"data.val_subjects must be a part of data.train_subjects (held out of training), but {outside} are not training subjects")
        if self.val_subjects and not self.subjects("train"):
            raise ConfigError("data.val_subjects holds every training subject: keep at least one in data.train_subjects to train on")

    @property
    def frames_per_unit(self) -> int:
        """Frames (at ``fps``) in one unit of ``window`` and the strides: 1, or the encoder's stride."""
        return FEATURE_STRIDE if self.window_unit == "feature_steps" else 1

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

    def subjects(self, split: Split) -> list[int] | None:
        """The subjects of a split: "train" the ones training fits (``train_subjects`` less
        ``val_subjects``), "val" the held-out ones, "test", or "all" (None: every sequence of the root)."""
        if split == "train":
            held_out = set(self.val_subjects)
            return [s for s in self.train_subjects if s not in held_out]
        if split == "val":
            return list(self.val_subjects)
        if split == "test":
            return list(self.test_subjects)
        if split == "all":
            return None
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}, got {split!r}")


@dataclass
class ModelConfig(_Section):
    """The detector: PointTAD's decoder with the self-attention optionally replaced by Mamba-MHSA."""

    section: ClassVar[str] = "model"

    encoder: EncoderKind = "i3d"  # "i3d" (Inception-I3D RGB), "small" (CPU encoder), "features" (precomputed)
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
    query_order: QueryOrder = "given"  # "given" (the paper), "centre" (sorted by segment centre), "bidirectional"
    initial_points: InitialPoints = "middle"  # "middle" (the paper, PointTAD: all at 0.5), "spread" (one segment a query)
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    mamba_backend: Backend = "torch"  # "torch", "mamba_ssm" (fused CUDA kernels), "auto"
    dense_head: bool = True

    def check(self) -> None:
        for key in ("hidden", "queries", "points", "layers", "heads", "ffn", "mix_dim", "subpoints", "num_classes",
                    "feature_dim", "d_state", "d_conv", "expand"):  # fmt: skip
            if getattr(self, key) <= 0:
                raise ConfigError(f"model.{key} must be positive, got {getattr(self, key)}")
        self._at_least(0, "mamba_blocks", "encoder_lr_scale")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.dropout must lie in [0, 1), got {self.dropout}")
        if self.hidden % self.heads:
            raise ConfigError(f"model.hidden ({self.hidden}) must be divisible by model.heads ({self.heads})")
        if self.points < 3:
            raise ConfigError(f"model.points must be >= 3 (two-thirds of them locate the segment), got {self.points}")
        if not 0 <= self.boundary_points <= self.points:
            raise ConfigError(f"model.boundary_points must lie in 0..model.points, got {self.boundary_points}")


@dataclass
class TrainConfig(_Section):
    """Optimisation and the set-prediction loss (docs/reference.md, section 3; the paper's section 4.2)."""

    section: ClassVar[str] = "train"

    epochs: int = 50
    lr: float = 1e-4
    lr_step: int = 10  # epochs between halvings
    lr_gamma: float = 0.5
    weight_decay: float = 1e-4
    batch_size: int = 1
    clip_grad: float = 0.1  # largest gradient norm; 0 turns clipping off
    amp: AmpMode = "bf16"  # "bf16" autocast on CUDA, "none"; CPU always runs float32
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
    aux_layers: AuxLayers = "all"  # which of them when aux_loss: "all", or "pointtad" (its code's zip: the first b)
    # matching costs
    cost_class: float = 10.0
    cost_l1: float = 5.0
    cost_iou: float = 5.0
    max_steps: int | None = None  # stop after this many optimiser steps (benchmarks, smoke tests)

    def check(self) -> None:
        for key in ("epochs", "lr_step", "batch_size", "lr"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"train.{key} must be positive, got {getattr(self, key)}")
        if not 0 < self.lr_gamma <= 1:
            raise ConfigError(f"train.lr_gamma must lie in (0, 1] (the factor of each learning-rate step), got {self.lr_gamma}")
        self._at_least(0, "weight_decay", "clip_grad", "seed", "eval_every", "class_weight", "no_object_weight", "l1_weight",
                       "iou_weight", "dense_weight", "cost_class", "cost_l1", "cost_iou")  # fmt: skip
        self._at_least(1, "max_steps")


@dataclass
class EvalConfig(_Section):
    """Turning per-query predictions into the challenge's detections (docs/reference.md, section 1).

    ``score_threshold`` set: the threshold (and ``nms_iou``, None meaning no NMS) are used as they are.
    Unset: both are chosen by the challenge's F1 on the split ``choose_on`` names, ``"train"`` (the
    subjects training fitted, the default) or ``"val"`` (``data.val_subjects``, held out of training,
    so the choice is not fitted to scores the model learnt to be confident on); ``nms_iou``, when set,
    is then kept and only the threshold chosen. The test split is never used to choose.
    """

    section: ClassVar[str] = "eval"

    score_threshold: float | None = None  # None: chosen on the split choose_on names
    nms_iou: float | None = None  # per-class NMS threshold; None: chosen along with the threshold (or no NMS)
    choose_on: ChooseOn = "train"  # "train" or "val": where an unset threshold is chosen
    alpha: float = 0.3  # the challenge's overlap threshold
    one_to_one: bool = False  # strict matching instead of the organisers' rule

    def check(self) -> None:
        self._between(0, 1, "score_threshold", "nms_iou", "alpha")


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        if self.eval.choose_on == "val" and self.eval.score_threshold is None and not self.data.val_subjects:
            raise ConfigError("eval.choose_on is 'val' but data.val_subjects is empty: hold some training subjects out (e.g. --set data.val_subjects=[34,35])")
        if self.model.encoder == "features":
            for key in ("train_step", "test_step"):
                step = getattr(self.data, key)
                if step % FEATURE_STRIDE:
                    raise ConfigError(f"data.{key.replace('step', 'stride')} ({step}) must be a multiple of {FEATURE_STRIDE} with precomputed features (one step a {FEATURE_STRIDE} frames)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _choices(options: Sequence[Any]) -> str:
    """``('a', 'b', 'c')`` -> ``"'a', 'b' or 'c'"``."""
    shown = [repr(o) for o in options]
    return shown[0] if len(shown) == 1 else f"{', '.join(shown[:-1])} or {shown[-1]}"


def _check_type(key: str, value: Any, annotation: Any) -> Any:
    """Return ``value`` converted to ``annotation`` when that is lossless, else raise ConfigError.
    Understands None unions, lists, Literal choices, bool, int, str and float (finite only)."""
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
    if origin is Literal:
        for option in args:
            if value == option and type(value) is type(option):
                return option
        raise ConfigError(f"{key} must be {_choices(args)}, got {value!r}")
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
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{key} must be a number, got {value!r}")
        if not math.isfinite(number):  # nan would pass every range check (nan < 0 is False) and then misbehave
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return number
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} must be a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported type {annotation}")


def _section_from_dict(cls: type, name: str, values: dict[str, Any]) -> Any:
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean '{name}.{close[0]}'?" if close else f"; known keys: {', '.join(names)}"
            raise ConfigError(f"unknown configuration key '{name}.{key}'{hint}")
    return cls(**values)  # each value is checked by the section


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
        raise ConfigError(f"value for {key} is not valid YAML: {raw!r} ({_one_line(err)})") from None
    return section, name, value


BASE_KEY = "base"


def _read_values(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The sections of a YAML file, with those of its ``base:`` file (recursively) under them."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read configuration file {path}: {getattr(err, 'strerror', None) or err}") from None
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {_one_line(err)}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of sections (data, model, train, eval)")
    base = values.pop(BASE_KEY, None)
    if base is None:
        return values
    if not isinstance(base, str):
        raise ConfigError(f"{path}: '{BASE_KEY}' must be the path of another configuration file, got {base!r}")
    base_path = path.parent / base
    if base_path.resolve() in seen or base_path.resolve() == path.resolve():
        raise ConfigError(f"{path}: '{BASE_KEY}: {base}' leads back to a file that is already being read")
    merged = _read_values(base_path, (*seen, path.resolve()))
    for section, entries in values.items():
        if isinstance(entries, dict) and isinstance(merged.get(section), dict):
            merged[section] = {**merged[section], **entries}
        else:
            merged[section] = entries
    return merged


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML configuration (or the defaults when ``path`` is None), starting from its ``base:`` file
    when it names one, and apply ``key=value`` overrides."""
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
    """Write ``config`` as YAML (atomically: a reader never sees half a file)."""
    write_atomic(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


def _one_line(err: Exception) -> str:
    """A YAML parser's message (several lines, with a caret drawing) as one line."""
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip() and set(line.strip()) != {"^"})


# Keys that say where files are, not what is trained: two runs of one experiment on two machines differ here.
PATH_KEYS = ("data.root", "data.cache", "data.features", "data.synthetic_dir", "model.encoder_weights", "train.out")


def config_differences(
    configs: Mapping[str, Config], ignore: Iterable[str] = PATH_KEYS
) -> list[tuple[str, tuple[Any, ...]]]:
    """Every ``section.key`` whose value is not the same in all of ``configs``, with each one's value.

    Args:
        configs: name -> configuration, e.g. ``{"this notebook": cfg, "the paper": paper}``.
        ignore: keys left out (default :data:`PATH_KEYS`, the file locations).

    Returns:
        ``[("model.layers", (2, 4)), ...]`` in the order the dataclasses declare the keys, values in the
        order of ``configs``.
    """
    ignored = set(ignore)
    values = [config.to_dict() for config in configs.values()]
    rows = []
    for section in dataclasses.fields(Config):
        for key in values[0][section.name] if values else ():
            name = f"{section.name}.{key}"
            row = tuple(v[section.name][key] for v in values)
            if name not in ignored and any(value != row[0] for value in row[1:]):
                rows.append((name, row))
    return rows


def _brief(value: Any) -> str:
    """A value as a table cell: runs of consecutive integers as ranges ([1, 2, 3, 7] -> "1-3, 7")."""
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        runs: list[list[int]] = []
        for v in value:
            if runs and v == runs[-1][-1] + 1:
                runs[-1].append(v)
            else:
                runs.append([v])
        return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)
    return f"{value:g}" if isinstance(value, float) else str(value)


def format_config_differences(configs: Mapping[str, Config], ignore: Iterable[str] = PATH_KEYS) -> str:
    """:func:`config_differences` as a text table: a row a key, a column a configuration."""
    rows = [(name, [_brief(v) for v in row]) for name, row in config_differences(configs, ignore)]
    if not rows:
        return "no differences (" + ", ".join(configs) + " agree on every key compared)"
    header = ["key", *configs]
    widths = [max(len(header[0]), *(len(name) for name, _ in rows))]
    widths += [max(len(title), *(len(cells[i]) for _, cells in rows)) for i, title in enumerate(header[1:])]
    lines = ["  ".join(text.ljust(width) for text, width in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * width for width in widths))
    lines += ["  ".join(text.ljust(width) for text, width in zip([name, *cells], widths)).rstrip() for name, cells in rows]
    return "\n".join(lines)
