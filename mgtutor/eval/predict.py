"""Whole-sequence prediction and evaluation: from a trained detector to the challenge's files and figures.

The offline path of a sequence (NOTES.md sections 1 and 3):

1. test windows: ``data.test_step`` apart (no overlap by default) plus one window aligned to the
   sequence's end (:func:`mgtutor.data.windows.split_windows`), preprocessed as evaluation during
   training does (centre crop, no augmentation: :class:`~mgtutor.data.dataset.WindowDataset`);
2. the detector's last decoder layer: each query's best class and that class's probability, its
   segment mapped back to original frame numbers by the window's own mapping
   (:func:`~mgtutor.eval.postprocess.window_detections` with :func:`~mgtutor.eval.postprocess.meta_to_frames`);
3. the windows merged (:func:`~mgtutor.eval.postprocess.merge_windows`): the *raw* detections;
4. post-processing (:func:`apply_postprocessing`): scores >= a threshold, then optional per-class NMS.
   The two settings come from the configuration (``eval.score_threshold``, ``eval.nms_iou``) or are
   chosen by :func:`choose_postprocessing` on the *training* split's raw detections. They are never
   chosen on the test split: that would fit them to the figures being reported.

On disk (:func:`write_predictions`, :func:`read_predictions`): one ``SampleXXXX_finelabels.csv`` per
sequence in SMG's label format (``label,start,end``, 1-based labels, no header: what the challenge
scores), and ``predictions.json`` with every detection's score (detection-mAP ranks by it) and the
post-processing used.

:func:`evaluate_predictions` gives the challenge's F1 (the organisers' rule, and the strict one-to-one
variant beside it) and detection-mAP over tIoU 0.1:0.9; :func:`make_evaluator` runs all of it as the
training engine's per-epoch evaluation.

Shapes: b windows in a batch, q queries, k classes.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from mgtutor.config import Config, EvalConfig, override_config
from mgtutor.data.dataset import WindowDataset, collate, model_inputs
from mgtutor.data.smg import NUM_LABELS, Gesture, SequenceInfo, read_labels, sample_name, write_labels
from mgtutor.eval.detection_map import detection_map
from mgtutor.eval.miga_f1 import miga_f1
from mgtutor.eval.postprocess import (
    DEFAULT_NMS_IOUS,
    Detection,
    Selection,
    WindowDetections,
    as_gestures,
    filter_detections,
    merge_windows,
    meta_to_frames,
    select_threshold,
    window_detections,
)
from mgtutor.model.detector import Detector
from mgtutor.train.checkpoint import CheckpointError, load_checkpoint

PREDICTIONS_JSON = "predictions.json"
LABELS_FILE = re.compile(r"^Sample(\d{1,6})_finelabels\.csv$")
FORMAT = 1  # of predictions.json

Predictions = dict[int, list[Detection]]  # sample id -> detections, labels 1-based, original frames


def load_model(checkpoint: str | Path, device: torch.device | str = "cpu", overrides: Sequence[str] = ()) -> tuple[Detector, Config]:
    """The detector a checkpoint holds, in eval mode on ``device``, and its configuration.

    The checkpoint is read with ``torch.load(..., weights_only=True)``
    (:func:`~mgtutor.train.checkpoint.load_checkpoint`); ``overrides`` (``"section.key=value"``) change
    the saved configuration, e.g. ``eval.score_threshold=0.4`` or ``data.cache=...``.
    """
    state = load_checkpoint(checkpoint)
    if "model" not in state or "config" not in state:
        raise CheckpointError(f"{checkpoint} holds no model weights and configuration")
    cfg = override_config(state["config"], overrides)
    # the weights below include the encoder's, so an I3D weights file is not needed to rebuild it
    model = Detector(dataclasses.replace(cfg.model, encoder_weights=None))
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        reason = str(err).strip().splitlines()
        raise CheckpointError(f"the weights in {checkpoint} do not fit the configured model: {' '.join(reason[:2])}") from err
    return model.to(device).eval(), cfg


def last_layer(model: nn.Module, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The final decoder layer's predictions for a batch of windows.

    Args:
        inputs: clips (b, 3, T, H, W) or features (b, feature_dim, T // 4), on the model's device.

    Returns:
        ``logits`` (b, q, k + 1) and ``segments`` (b, q, 2) normalised to each window.
    """
    output = model(inputs)
    return output.logits[-1], output.segments[-1]


def prediction_windows(sequences: Sequence[SequenceInfo], cfg: Config, uint8: bool = False) -> WindowDataset:
    """The test-style windows of ``sequences`` (whichever split they belong to), without augmentation;
    ``uint8``: clips as uint8 crops, for :func:`mgtutor.data.dataset.model_inputs` to make float on the device."""
    features = cfg.model.encoder == "features"
    return WindowDataset(sequences, cfg.data, "test", features=features, feature_dim=cfg.model.feature_dim, augment=False, uint8=uint8)


@torch.no_grad()
def predict_sequences(
    model: nn.Module,
    sequences: Sequence[SequenceInfo],
    cfg: Config,
    device: torch.device | str | None = None,
    batch_size: int = 4,
    progress: bool = False,
) -> Predictions:
    """Raw detections of whole sequences: every query of every test window, merged, *not* thresholded.

    Args:
        model: a :class:`~mgtutor.model.detector.Detector` (run in eval mode here, its mode restored after).
        sequences: the sequences to predict (any split: the windows are cut the test way).
        cfg: the configuration the model was trained with (``data`` for windows and preprocessing).
        device: where the model is (default: the device of its parameters).
        batch_size: windows per forward pass.

    Returns:
        sample id -> detections sorted by (start, end, label), one per query of each window that keeps it
        (:func:`~mgtutor.eval.postprocess.merge_windows`); labels 1-based, frames of the original video.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    dataset = prediction_windows(sequences, cfg, uint8=True)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=cfg.data.num_workers, collate_fn=collate, pin_memory=device.type == "cuda")
    windows: dict[int, list[WindowDetections]] = {seq.sample: [] for seq in sequences}
    was_training = model.training
    model.eval()
    try:
        if progress:
            from tqdm.auto import tqdm

            loader = tqdm(loader, desc="predict", unit="batch", leave=False)
        for batch in loader:
            logits, segments = last_layer(model, model_inputs(batch, device))
            for window_logits, window_segments, meta in zip(logits, segments, batch["meta"]):
                windows[meta["sequence"]].append(window_detections(window_logits, window_segments, meta_to_frames(meta)))
    finally:
        model.train(was_training)
    return {sample: merge_windows(found) for sample, found in windows.items()}


def ground_truth(sequences: Sequence[SequenceInfo]) -> dict[int, list[tuple[int, int, int]]]:
    """sample id -> its labelled gestures as ``(label, start_frame, end_frame)``, in file order."""
    return {seq.sample: [(g.label, g.start, g.end) for g in seq.gestures] for seq in sequences}


def choose_postprocessing(
    model: nn.Module,
    train_sequences: Sequence[SequenceInfo],
    cfg: Config,
    device: torch.device | str | None = None,
    batch_size: int = 4,
    train_predictions: Mapping[int, Sequence[Detection]] | None = None,
) -> Selection:
    """The score threshold and NMS setting with the best challenge F1 on the **training** split.

    Runs :func:`predict_sequences` on ``train_sequences`` (test-style windows) unless their raw
    detections are passed as ``train_predictions``, then
    :func:`~mgtutor.eval.postprocess.select_threshold` with ``eval.alpha`` and ``eval.one_to_one``.
    ``eval.nms_iou``, when set, fixes the NMS setting and only the threshold is chosen. Only ever pass
    training sequences: choosing on the test split fits the settings to the reported figures.
    """
    if train_predictions is None:
        train_predictions = predict_sequences(model, train_sequences, cfg, device, batch_size)
    nms_ious = DEFAULT_NMS_IOUS if cfg.eval.nms_iou is None else (cfg.eval.nms_iou,)
    truth = ground_truth(train_sequences)
    return select_threshold(train_predictions, truth, nms_ious=nms_ious, alpha=cfg.eval.alpha, one_to_one=cfg.eval.one_to_one)


def postprocessing_settings(settings: Selection | EvalConfig) -> tuple[float, float | None]:
    """``(score_threshold, nms_iou)`` of a :class:`~mgtutor.eval.postprocess.Selection` or of
    ``cfg.eval`` (whose ``nms_iou`` None then means no NMS)."""
    if settings.score_threshold is None:
        raise ValueError(
            "eval.score_threshold is not set: choose it on the training split with choose_postprocessing, "
            "or set it (e.g. --set eval.score_threshold=0.3)"
        )
    if settings.nms_iou is not None and not 0 <= settings.nms_iou <= 1:
        raise ValueError(f"eval.nms_iou must lie in [0, 1] (or be null for no NMS), got {settings.nms_iou}")
    return float(settings.score_threshold), settings.nms_iou


def describe_postprocessing(settings: Selection | EvalConfig) -> dict[str, Any]:
    """The post-processing as plain values for ``predictions.json`` and logs."""
    threshold, nms_iou = postprocessing_settings(settings)
    if isinstance(settings, Selection):
        return {"score_threshold": threshold, "nms_iou": nms_iou, "chosen_on": "training split", "training_f1": settings.f1.f1}
    return {"score_threshold": threshold, "nms_iou": nms_iou, "chosen_on": "configuration"}


def apply_postprocessing(raw: Mapping[int, Sequence[Detection]], settings: Selection | EvalConfig) -> Predictions:
    """Each sequence's raw detections with scores >= the threshold, then per-class NMS when set."""
    threshold, nms_iou = postprocessing_settings(settings)
    return {sample: filter_detections(found, threshold, nms_iou) for sample, found in raw.items()}


def _detection_row(d: Detection) -> dict[str, float]:
    return {"label": d.label, "start": d.start, "end": d.end, "score": d.score}


def write_predictions(
    out_dir: str | Path,
    detections: Mapping[int, Sequence[Detection]],
    postprocessing: Mapping[str, Any] | None = None,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Write one ``SampleXXXX_finelabels.csv`` per sequence (an empty file when it has no detection) and
    ``predictions.json`` (scores, ``postprocessing`` as :func:`describe_postprocessing` gives it, and any
    ``info`` such as the split and the configuration).

    A folder written before by this function is updated: label files of sequences not in ``detections``
    are removed, so the folder always describes one run. Other folders must hold no label files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = {sample_name(sample) + "_finelabels.csv" for sample in detections}
    stale = [p for p in out.iterdir() if LABELS_FILE.match(p.name) and p.name not in names]
    if stale and not (out / PREDICTIONS_JSON).exists():
        raise FileExistsError(f"{out} holds label files ({stale[0].name}, ...) not written by mgtutor predict; choose another folder")
    for path in stale:
        path.unlink()
    for sample, found in sorted(detections.items()):
        write_labels(out / f"{sample_name(sample)}_finelabels.csv", [Gesture(d.label, int(d.start), int(d.end)) for d in found])
    document = {
        "format": FORMAT,
        "postprocessing": dict(postprocessing) if postprocessing is not None else None,
        **dict(info or {}),
        "sequences": {sample_name(s): [_detection_row(d) for d in found] for s, found in sorted(detections.items())},
    }
    path = out / PREDICTIONS_JSON
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(document, indent=1))
    tmp.replace(path)
    return out


def prediction_info(pred_dir: str | Path) -> dict[str, Any]:
    """What ``predictions.json`` records besides the detections (post-processing, split, configuration);
    empty when the folder has no such file."""
    path = Path(pred_dir) / PREDICTIONS_JSON
    if not path.exists():
        return {}
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err
    return {key: value for key, value in document.items() if key != "sequences"}


def read_predictions(pred_dir: str | Path) -> Predictions:
    """The detections of a predictions folder: sample id -> detections in file order.

    The label files are the truth (read with :func:`mgtutor.data.smg.read_labels`, so a malformed row is
    reported with its file and line). Scores come from ``predictions.json`` for each sequence whose rows
    there equal its label file's; otherwise (a hand-made or edited file) every score is 1.
    """
    folder = Path(pred_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"no predictions folder at {folder}")
    scored: dict[str, list[dict[str, float]]] = {}
    if (folder / PREDICTIONS_JSON).exists():
        scored = json.loads((folder / PREDICTIONS_JSON).read_text()).get("sequences", {})
    predictions: Predictions = {}
    for path in sorted(folder.iterdir()):
        match = LABELS_FILE.match(path.name)
        if not match:
            continue
        sample = int(match.group(1))
        gestures = read_labels(path)
        rows = scored.get(sample_name(sample), [])
        same = len(rows) == len(gestures) and all(
            (r["label"], r["start"], r["end"]) == (g.label, g.start, g.end) for r, g in zip(rows, gestures)
        )
        scores = [float(r["score"]) for r in rows] if same else [1.0] * len(gestures)
        predictions[sample] = [Detection(g.label, g.start, g.end, s) for g, s in zip(gestures, scores)]
    return predictions


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


def make_evaluator(
    cfg: Config,
    train_sequences: Sequence[SequenceInfo],
    test_sequences: Sequence[SequenceInfo],
    batch_size: int = 4,
) -> Callable[[nn.Module, int], dict[str, float]]:
    """The training engine's ``evaluate(model, epoch)``: the test split's figures after post-processing.

    Each call chooses the post-processing on ``train_sequences`` (unless ``eval.score_threshold`` is set),
    predicts ``test_sequences`` and returns :func:`evaluate_predictions`' figures plus the
    ``score_threshold`` (and ``nms_iou`` when NMS is used) that produced them.
    """
    truth = ground_truth(test_sequences)

    def evaluate(model: nn.Module, epoch: int) -> dict[str, float]:
        device = next(model.parameters()).device
        settings = cfg.eval if cfg.eval.score_threshold is not None else choose_postprocessing(model, train_sequences, cfg, device, batch_size)
        raw = predict_sequences(model, test_sequences, cfg, device, batch_size)
        figures = evaluate_predictions(apply_postprocessing(raw, settings), truth, cfg.eval, cfg.model.num_classes)
        threshold, nms_iou = postprocessing_settings(settings)
        figures["score_threshold"] = threshold
        if nms_iou is not None:
            figures["nms_iou"] = nms_iou
        return figures

    return evaluate


def class_names(root: str | Path | None) -> tuple[str, ...] | None:
    """The names of labels 1..17 when ``root`` is a synthetic set (mgtutor's gesture table), else None
    (SMG's label files carry numbers only)."""
    from mgtutor.data.synthetic import CLASS_NAMES, MARKER

    return CLASS_NAMES if root is not None and (Path(root) / MARKER).exists() else None


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
