"""The evaluation pipeline, once: a trained detector scored on a split of a root.

:func:`evaluate_split` is what ``mgtutor predict``, ``mgtutor evaluate``'s numbers, the training
engine's per-epoch evaluation (:func:`make_evaluator`), ``mgtutor demo``, ``benchmarks/quality.py``
and the notebooks run:

1. the split's sequences (:meth:`mgtutor.config.DataConfig.subjects`: "train", "val", "test" or "all")
   of the configured root, or of another root (whose frames are then decoded: the configured frame
   cache is named by sample id and belongs to the configured root, :func:`config_for_root`);
2. their raw detections (:func:`mgtutor.eval.inference.predict_sequences`);
3. the post-processing (:func:`resolve_postprocessing`): the configured score threshold and NMS
   (``eval.score_threshold``, ``eval.nms_iou``) when the threshold is set; otherwise both chosen by the
   challenge's F1 on the split ``eval.choose_on`` names: "train", the subjects the model was fitted to
   (the default), or "val", training subjects held out of training (``data.val_subjects``), whose
   scores the model did not learn to be confident on. Never on the test split, which would fit the
   settings to the figures being reported;
4. the detections kept (:func:`~mgtutor.eval.postprocess.apply_postprocessing`) and scored against the
   split's labels (:func:`evaluate_predictions`: the challenge's F1 by the organisers' rule and
   one-to-one, detection-mAP over tIoU 0.1:0.9);
5. optionally, the prediction files (:mod:`mgtutor.eval.prediction_files`).

:func:`evaluate_folder` scores prediction files written earlier (or by anyone) against a root.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from mgtutor.config import Config, ConfigError, DataConfig, EvalConfig
from mgtutor.data.errors import DataError
from mgtutor.data.smg import NUM_LABELS, SequenceInfo, find_samples, load_root, sample_name
from mgtutor.data.synthetic import CLASS_NAMES, MARKER, configured_root
from mgtutor.eval.detection_map import detection_map
from mgtutor.eval.inference import Predictions, predict_sequences
from mgtutor.eval.miga_f1 import miga_f1
from mgtutor.eval.postprocess import DEFAULT_NMS_IOUS, Detection, Selection, apply_postprocessing, as_gestures, select_threshold
from mgtutor.eval.prediction_files import check_prediction_folder, prediction_info, read_predictions, write_predictions

ChooseOn = Literal["train", "val"]  # where an unset threshold is chosen; also eval.choose_on
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test", "all": "whole"}

Truth = dict[int, list[tuple[int, int, int]]]  # sample id -> (label, start_frame, end_frame), labels 1-based


def ground_truth(sequences: Sequence[SequenceInfo]) -> Truth:
    """sample id -> its labelled gestures as ``(label, start_frame, end_frame)``, in file order."""
    return {seq.sample: [(g.label, g.start, g.end) for g in seq.gestures] for seq in sequences}


def evaluate_predictions(
    predictions: Mapping[Hashable, Sequence[Detection]],
    truth: Mapping[Hashable, Sequence[Sequence[float]]],
    eval_cfg: EvalConfig | None = None,
    num_classes: int = NUM_LABELS,
) -> dict[str, float]:
    """The challenge's figures and detection-mAP of post-processed predictions.

    Args:
        predictions: sequence id -> detections (with scores; give score 1 when there are none).
        truth: sequence id -> ``(label, start_frame, end_frame)`` (:func:`ground_truth`).
        eval_cfg: ``alpha`` (default 0.3, the challenge's).
        num_classes: labels lie in 1..num_classes.

    Returns:
        ``f1``, ``precision``, ``recall``, ``correct`` by the organisers' rule (a prediction may be credited
        to several gestures); ``strict_f1``, ``strict_precision``, ``strict_recall``, ``strict_correct``
        one-to-one; ``predictions``, ``ground_truth`` (counts); and, when the truth holds a gesture,
        ``map`` (mean over tIoU 0.1:0.9) and ``map@0.1`` ... ``map@0.9``.
    """
    alpha = (eval_cfg or EvalConfig()).alpha
    gestures = {sequence: as_gestures(found) for sequence, found in predictions.items()}
    official = miga_f1(gestures, truth, alpha=alpha, one_to_one=False)
    strict = miga_f1(gestures, truth, alpha=alpha, one_to_one=True)
    figures: dict[str, float] = {
        "f1": official.f1, "precision": official.precision, "recall": official.recall, "correct": official.correct,
        "strict_f1": strict.f1, "strict_precision": strict.precision, "strict_recall": strict.recall, "strict_correct": strict.correct,
        "predictions": official.num_predictions, "ground_truth": official.num_ground_truth,
    }  # fmt: skip
    if any(len(g) for g in truth.values()):
        scored = {sequence: [tuple(d) for d in found] for sequence, found in predictions.items()}
        result = detection_map(scored, truth, num_classes=num_classes)
        figures["map"] = result.average
        figures.update({f"map@{t:g}": value for t, value in zip(result.thresholds, result.mean_ap)})
    return figures


def format_figures(figures: Mapping[str, float], one_to_one: bool = False) -> str:
    """A headline F1 (the organisers' rule, or the strict one with ``one_to_one``), the F1 table with
    both rules side by side, and the mAP table, as ``mgtutor evaluate`` prints them."""
    if one_to_one:
        headline = f"F1 {figures['strict_f1']:.4f} (one-to-one; organisers' rule {figures['f1']:.4f})"
    else:
        headline = f"F1 {figures['f1']:.4f} (organisers' rule; one-to-one {figures['strict_f1']:.4f})"
    lines = [
        headline,
        "",
        f"{'':24s}{'official rule':>15s}{'one-to-one':>13s}",
        f"{'F1':24s}{figures['f1']:15.4f}{figures['strict_f1']:13.4f}",
        f"{'precision':24s}{figures['precision']:15.4f}{figures['strict_precision']:13.4f}",
        f"{'recall':24s}{figures['recall']:15.4f}{figures['strict_recall']:13.4f}",
        f"{'correct':24s}{figures['correct']:15d}{figures['strict_correct']:13d}",
        f"predictions {figures['predictions']}, ground-truth gestures {figures['ground_truth']}",
    ]
    thresholds = [key for key in figures if key.startswith("map@")]
    if thresholds:
        lines.append("")
        lines.append("tIoU " + " ".join(f"{key[4:]:>6s}" for key in thresholds) + f" {'mean':>6s}")
        lines.append("mAP  " + " ".join(f"{figures[key]:6.4f}" for key in thresholds) + f" {figures['map']:6.4f}")
    else:
        lines.append("mAP: undefined (the ground truth holds no gesture)")
    return "\n".join(lines)


def class_names(root: str | Path | None) -> tuple[str, ...] | None:
    """The names of labels 1..17 when ``root`` is a synthetic set (mgtutor's gesture table), else None
    (SMG's label files carry numbers only)."""
    return CLASS_NAMES if root is not None and (Path(root) / MARKER).exists() else None


# -- the post-processing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Postprocessing:
    """The score threshold and NMS setting applied to raw detections, and where they come from.

    ``chosen_on`` is "configuration" (``eval.score_threshold`` was set) or the split they were chosen on
    ("train" or "val"), with the ``subjects`` of that split, their root and the F1 the choice reached
    there (``selection`` holds every setting tried).
    """

    score_threshold: float
    nms_iou: float | None
    chosen_on: Literal["configuration", "train", "val"]
    subjects: tuple[int, ...] = ()
    root: str | None = None
    f1: float | None = None
    selection: Selection | None = dataclasses.field(default=None, repr=False, compare=False)

    def describe(self) -> dict[str, Any]:
        """Plain values for ``predictions.json``, results files and logs."""
        described: dict[str, Any] = {"score_threshold": self.score_threshold, "nms_iou": self.nms_iou, "chosen_on": self.chosen_on}
        if self.chosen_on != "configuration":
            described |= {"subjects": list(self.subjects), "root": self.root, "f1": self.f1}
        return described

    def summary(self) -> str:
        """One line for people: the values, and where and why they were chosen."""
        nms = "no NMS" if self.nms_iou is None else f"per-class NMS at tIoU {self.nms_iou:g}"
        values = f"score threshold {self.score_threshold:g}, {nms}"
        if self.chosen_on == "configuration":
            return f"post-processing from the configuration: {values}"
        where = f" of {self.root}" if self.root else ""
        held_out = ", held out of training" if self.chosen_on == "val" else ""
        return (
            f"post-processing chosen on the {SPLIT_NAMES[self.chosen_on]} split ({len(self.subjects)} sequences{where}"
            f"{held_out}) because eval.score_threshold is not set: {values} "
            f"({SPLIT_NAMES[self.chosen_on]} F1 {self.f1:.4f}); the test split is never used for this"
        )


def choose_postprocessing(
    model: nn.Module,
    sequences: Sequence[SequenceInfo],
    cfg: Config,
    device: torch.device | str | None = None,
    batch_size: int = 4,
    train_predictions: Mapping[int, Sequence[Detection]] | None = None,
) -> Selection:
    """The score threshold and NMS setting with the best challenge F1 on ``sequences``.

    Runs :func:`~mgtutor.eval.inference.predict_sequences` on ``sequences`` (test-style windows) unless
    their raw detections are passed as ``train_predictions``, then
    :func:`~mgtutor.eval.postprocess.select_threshold` with ``eval.alpha`` and ``eval.one_to_one``.
    ``eval.nms_iou``, when set, fixes the NMS setting and only the threshold is chosen. Pass training or
    validation sequences only (:func:`resolve_postprocessing` picks them): choosing on the test split
    fits the settings to the reported figures.
    """
    if train_predictions is None:
        train_predictions = predict_sequences(model, sequences, cfg, device, batch_size)
    nms_ious = DEFAULT_NMS_IOUS if cfg.eval.nms_iou is None else (cfg.eval.nms_iou,)
    truth = ground_truth(sequences)
    return select_threshold(train_predictions, truth, nms_ious=nms_ious, alpha=cfg.eval.alpha, one_to_one=cfg.eval.one_to_one)


def resolve_postprocessing(
    model: nn.Module,
    cfg: Config,
    *,
    root: str | Path | None = None,
    sequences: Sequence[SequenceInfo] | None = None,
    raw: Mapping[int, Sequence[Detection]] | None = None,
    device: torch.device | str | None = None,
    batch_size: int = 4,
    progress: bool = False,
) -> Postprocessing:
    """The post-processing ``cfg`` asks for: ``eval.score_threshold`` (and ``eval.nms_iou``) when the
    threshold is set, else chosen (:func:`choose_postprocessing`) on the ``eval.choose_on`` split.

    Args:
        root: where that split's sequences are (default: the configured root, or its synthetic set
            when one is there; ConfigError when there is none).
        sequences: that split's sequences, already loaded (then ``root`` only describes them).
        raw: raw detections already predicted for some sequences; those of the split are reused.
    """
    if cfg.eval.score_threshold is not None:
        return Postprocessing(cfg.eval.score_threshold, cfg.eval.nms_iou, "configuration")
    split = cfg.eval.choose_on
    if sequences is None:
        root = root if root is not None else configured_root(cfg.data, make=False)
        if root is None:
            raise ConfigError(
                f"eval.score_threshold is not set and the {SPLIT_NAMES[split]} data to choose it on was not found; "
                "set it (--set eval.score_threshold=0.3) or point to the training root (--set data.root=...)"
            )
        subjects = cfg.data.subjects(split)
        if not subjects:
            raise ConfigError(f"eval.choose_on is {split!r} but data.{split}_subjects leaves no subjects to choose the score threshold on")
        sequences = load_root(root, subjects)
    known = raw is not None and all(seq.sample in raw for seq in sequences)
    reused = {seq.sample: raw[seq.sample] for seq in sequences} if known else None
    if reused is None and progress:
        reused = predict_sequences(model, sequences, cfg, device, batch_size, progress=True)
    selection = choose_postprocessing(model, sequences, cfg, device, batch_size, train_predictions=reused)
    subjects = tuple(seq.sample for seq in sequences)
    return Postprocessing(selection.score_threshold, selection.nms_iou, split, subjects, None if root is None else str(root), selection.f1.f1, selection)


# -- a split, end to end ---------------------------------------------------------------------------------


def config_for_root(cfg: Config, root: str | Path) -> Config:
    """``cfg`` reading ``root``: ``data.root`` set to it, and the frame cache dropped when ``root`` is not
    the configured root (the cache is named by sample id, so it belongs to the root it was made from)."""
    data = cfg.data
    same = data.root is not None and Path(data.root).resolve() == Path(root).resolve()
    if not same and data.root is None:
        found = configured_root(data, make=False)
        same = found is not None and found.resolve() == Path(root).resolve()
    return dataclasses.replace(cfg, data=dataclasses.replace(data, root=str(root), cache=data.cache if same else None))


def subjects_of(data: DataConfig, split: str) -> list[int] | None:
    """The subjects of ``split`` (:meth:`~mgtutor.config.DataConfig.subjects`), refusing an empty one."""
    subjects = data.subjects(split)
    if subjects is not None and not subjects:
        raise ConfigError(f"the {split} split has no subjects (data.{split}_subjects is empty)")
    return subjects


def prediction_record(cfg: Config, split: str, root: str | Path | None) -> dict[str, Any]:
    """What a predictions folder records about the run (``predictions.json``): the split, its root, every
    split's subjects (``mgtutor evaluate`` scores the right sequences with them), the classes and the
    configuration."""
    return {
        "split": split,
        "root": None if root is None else str(root),
        "subjects": {name: cfg.data.subjects(name) for name in ("train", "val", "test")},
        "num_classes": cfg.model.num_classes,
        "config": cfg.to_dict(),
    }


@dataclass
class SplitEvaluation:
    """What :func:`evaluate_split` found: the split's sequences, raw and kept detections, the
    post-processing, the ground truth, the figures, and the predictions folder when one was written."""

    split: str
    root: Path | None
    sequences: list[SequenceInfo]
    raw: Predictions
    postprocessing: Postprocessing
    detections: Predictions
    truth: Truth
    figures: dict[str, float]
    out: Path | None = None


def evaluate_split(
    model: nn.Module,
    cfg: Config,
    split: str = "test",
    *,
    root: str | Path | None = None,
    sequences: Sequence[SequenceInfo] | None = None,
    raw: Mapping[int, Sequence[Detection]] | None = None,
    choice_sequences: Sequence[SequenceInfo] | None = None,
    device: torch.device | str | None = None,
    batch_size: int = 4,
    out: str | Path | None = None,
    info: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> SplitEvaluation:
    """Score ``model`` on ``split`` of a root, as the module docstring lists; the one pipeline.

    Args:
        model: a detector (its mode is restored after).
        cfg: its configuration (``data`` for windows and subjects, ``eval`` for the post-processing).
        split: "test" (default), "train", "val" or "all".
        root: an SMG-format root (default: the configured one; :func:`config_for_root` for another).
        sequences: the split's sequences, already loaded (``root`` then only describes them).
        raw: their raw detections, already predicted (e.g. a second evaluation with another
            ``eval`` section: only the post-processing and the scores are redone).
        choice_sequences: the sequences to choose the post-processing on, already loaded (default: the
            ``eval.choose_on`` split of the root, reusing this split's detections where they overlap).
        device, batch_size: where and how many windows a forward pass.
        out: write the prediction files there (:func:`mgtutor.eval.prediction_files.write_predictions`),
            with :func:`prediction_record` and ``info``; the folder is checked before any prediction.
        progress: progress bars while predicting.
    """
    if out is not None:
        check_prediction_folder(out)
    if root is None and (sequences is None or (choice_sequences is None and cfg.eval.score_threshold is None)):
        root = configured_root(cfg.data, make=False)
        if root is None:
            raise ConfigError("there is no data to evaluate on: data.root is not set and no synthetic set is at data.synthetic_dir")
    if root is not None:
        cfg = config_for_root(cfg, root)
        root = Path(root)
    if sequences is None:
        sequences = load_root(root, subjects_of(cfg.data, split))
    sequences = list(sequences)
    if raw is None or any(seq.sample not in raw for seq in sequences):
        raw = predict_sequences(model, sequences, cfg, device, batch_size, progress=progress)
    else:
        raw = {seq.sample: list(raw[seq.sample]) for seq in sequences}
    postprocessing = resolve_postprocessing(
        model, cfg, root=root, sequences=choice_sequences, raw=raw, device=device, batch_size=batch_size, progress=progress
    )
    detections = apply_postprocessing(raw, postprocessing)
    truth = ground_truth(sequences)
    figures = evaluate_predictions(detections, truth, cfg.eval, cfg.model.num_classes)
    written = None
    if out is not None:
        record = {**prediction_record(cfg, split, root), **dict(info or {})}
        written = write_predictions(out, detections, postprocessing.describe(), record)
    return SplitEvaluation(split, root, sequences, raw, postprocessing, detections, truth, figures, written)


def make_evaluator(
    cfg: Config,
    choice_sequences: Sequence[SequenceInfo] | None = None,
    test_sequences: Sequence[SequenceInfo] | None = None,
    batch_size: int = 4,
) -> Callable[[nn.Module, int], dict[str, float]]:
    """The training engine's ``evaluate(model, epoch)``: :func:`evaluate_split` on the test split.

    Returns its figures plus the ``score_threshold`` (and ``nms_iou`` when NMS is used) that produced
    them. ``choice_sequences`` (the sequences to choose the post-processing on when
    ``eval.score_threshold`` is not set, by default the ``eval.choose_on`` split) and ``test_sequences``
    are read from the configured root at the first call unless given.
    """
    loaded: dict[str, list[SequenceInfo] | None] = {"test": None if test_sequences is None else list(test_sequences)}
    loaded["choice"] = None if choice_sequences is None else list(choice_sequences)

    def evaluate(model: nn.Module, epoch: int) -> dict[str, float]:
        if loaded["test"] is None or (loaded["choice"] is None and cfg.eval.score_threshold is None):
            root = configured_root(cfg.data)
            if loaded["test"] is None:
                loaded["test"] = load_root(root, subjects_of(cfg.data, "test"))
            if loaded["choice"] is None and cfg.eval.score_threshold is None:
                loaded["choice"] = load_root(root, subjects_of(cfg.data, cfg.eval.choose_on))
        device = next(model.parameters()).device
        result = evaluate_split(
            model, cfg, "test", sequences=loaded["test"], choice_sequences=loaded["choice"], device=device, batch_size=batch_size
        )
        figures = dict(result.figures)
        figures["score_threshold"] = result.postprocessing.score_threshold
        if result.postprocessing.nms_iou is not None:
            figures["nms_iou"] = result.postprocessing.nms_iou
        return figures

    return evaluate


# -- prediction files against a root ---------------------------------------------------------------------


@dataclass
class FolderEvaluation:
    """What :func:`evaluate_folder` scored: the sequences, their predictions and truth, the figures, and
    the predicted sequences it left out because they lie outside the split."""

    split: str
    sequences: list[SequenceInfo]
    predictions: Predictions
    truth: Truth
    figures: dict[str, float]
    ignored: list[int]


def evaluate_folder(
    pred_dir: str | Path, gt_root: str | Path, split: str = "test", subjects: Sequence[int] | None = None
) -> FolderEvaluation:
    """Score a predictions folder against the ground truth of ``gt_root``.

    The split's subjects are ``subjects`` when given, else those the folder's ``predictions.json``
    records for ``split``, else the default configuration's (SMG's cross-subject split); "all" scores
    every sequence of the root. Raises DataError when the folder holds no predictions, predictions for
    sequences the root does not have, or none (or not all) of the split's.
    """
    pred_dir = Path(pred_dir)
    predictions = read_predictions(pred_dir)
    if not predictions:
        raise DataError(pred_dir, "holds no predictions (no SampleXXXX_finelabels.csv files); write them with mgtutor predict")
    info = prediction_info(pred_dir)
    if subjects is None and split != "all":
        recorded = info.get("subjects")
        subjects = recorded.get(split) if isinstance(recorded, dict) else None
        if not subjects:
            subjects = subjects_of(DataConfig(), split)
    in_root = set(find_samples(gt_root))
    wanted = sorted(in_root) if subjects is None else sorted(set(subjects))
    foreign = sorted(set(predictions) - in_root)
    if foreign:
        raise DataError(pred_dir, f"holds predictions for {', '.join(map(sample_name, foreign))}, which {gt_root} does not have; wrong ground-truth root?")
    missing = [s for s in wanted if s not in predictions]
    if wanted and len(missing) == len(wanted):
        raise DataError(
            pred_dir,
            f"has no predictions for the {split} split ({', '.join(map(sample_name, wanted))}); it holds "
            f"{', '.join(map(sample_name, sorted(predictions)))} (choose the split or subjects to match)",
        )
    if missing:
        raise DataError(pred_dir, f"lacks predictions for {', '.join(map(sample_name, missing))} of the {split} split")
    sequences = load_root(gt_root, wanted)
    truth = ground_truth(sequences)
    num_classes = info.get("num_classes", NUM_LABELS)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        num_classes = NUM_LABELS
    kept = {s: predictions[s] for s in wanted}
    figures = evaluate_predictions(kept, truth, num_classes=num_classes)
    return FolderEvaluation(split, sequences, kept, truth, figures, sorted(set(predictions) - set(wanted)))
