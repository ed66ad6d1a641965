"""Inference: a trained detector's raw detections of whole sequences.

The offline path of a sequence (docs/reference.md, sections 1 and 3), up to the post-processing:

1. test windows: ``data.test_step`` apart (no overlap by default) plus one window aligned to the
   sequence's end (:func:`mgtutor.data.windows.split_windows`), preprocessed as evaluation during
   training does (centre crop, no augmentation: :class:`~mgtutor.data.dataset.WindowDataset`);
2. the detector's last decoder layer: each query's best class and that class's probability, its
   segment mapped back to original frame numbers by the window's own mapping
   (:func:`~mgtutor.eval.postprocess.window_detections` with :func:`~mgtutor.eval.postprocess.meta_to_frames`);
3. the windows merged (:func:`~mgtutor.eval.postprocess.merge_windows`): the *raw* detections, every
   query of every window that keeps it, not thresholded.

What comes after (the score threshold and NMS, scoring, prediction files) is
:mod:`mgtutor.eval.pipeline`'s; :mod:`mgtutor.eval.online` runs the same steps on a stream.

Shapes: b windows in a batch, q queries, k classes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from mgtutor.config import Config, override_config
from mgtutor.data.dataset import WindowDataset, collate, model_inputs
from mgtutor.data.smg import SequenceInfo
from mgtutor.eval.postprocess import Detection, WindowDetections, merge_windows, meta_to_frames, window_detections
from mgtutor.model.detector import Detector
from mgtutor.train.checkpoint import CheckpointError, load_checkpoint

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
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
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
