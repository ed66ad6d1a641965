"""The torch Dataset of windows: clips (or precomputed features) with their ground truths.

An item (``WindowDataset[i]``) is a dict:
- ``"clip"``: float32 ``(3, T, H, W)`` in [-1, 1] (T = ``data.window_frames``, H = W = ``data.crop``), or, with
  ``uint8=True`` (what training and prediction use), the uint8 crop ``(3, T, H, W)`` (a view of the frames'
  channels-last memory) that the device turns into the float clip (:func:`model_inputs`); in features
  mode ``"features"``: float32 ``(feature_dim, T // 4)``;
- ``"augment"`` (uint8 training clips only): the window's augmentation parameters ``(k,)``
  (:func:`mgtutor.data.augment.draw_parameters`);
- ``"segments"``: float32 ``(g, 2)`` in window coordinates; ``"labels"``: int64 ``(g,)`` 0-based;
- ``"meta"``: ``sequence`` (sample id), ``start`` (first sampled position), ``window``, ``fps``,
  ``source_fps``, ``num_frames`` (original frames of the sequence), ``first_frame`` (original frame of
  the window's first sampled frame) and ``length`` (sampled frames of the window inside the video).

Frames come from the frame cache (``data.cache``, written by ``mgtutor prepare``) when it holds the
sequence, else they are decoded from the video on the fly (seeking to the window). Training clips get a
random crop and the augmentation ``data.augment`` names (:mod:`mgtutor.data.augment`: mgtutor's photometric
jitter, or PointTAD's distortion and rotation; flips only with ``data.flip``, since some micro-gestures are
side-specific); test clips a centre crop. The float clip of an item is the uint8 item passed through
:func:`model_inputs` on the CPU: the same numbers either way. A window reaching past the end of a sequence
repeats its last frame (or feature step).

Precomputed features live in ``<data.features>/SampleXXXX.npy``: float ``(feature_dim, ceil(T_seq / 4))``
where ``T_seq = num_sampled(numFrames, source_fps, data.fps)``; step ``j`` summarises sampled frames
``[4j, 4j + 4)`` (an encoder of stride 4 run over the whole sampled sequence, padded to a multiple of 4;
``mgtutor extract-features`` writes them, :mod:`mgtutor.data.features`). Windows then start at multiples of 4.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch.utils.data import Dataset, default_collate, get_worker_info

from mgtutor.config import ConfigError
from mgtutor.data.augment import augment_clips, draw_parameters, to_float
from mgtutor.data.cache import open_cached
from mgtutor.data.errors import DataError
from mgtutor.data.smg import SequenceInfo, load_root, sample_name
from mgtutor.data.video import decode
from mgtutor.data.windows import FEATURE_STRIDE, Window, num_sampled, split_windows


def features_length(num_frames: int, source_fps: float, fps: float) -> int:
    """Feature steps in a sequence's features file: ``ceil(num_sampled / 4)``."""
    return math.ceil(num_sampled(num_frames, source_fps, fps) / FEATURE_STRIDE)


def features_path(features_dir: str | Path, sample: int) -> Path:
    return Path(features_dir) / f"{sample_name(sample)}.npy"


def centre_box(height: int, width: int, size: int) -> tuple[int, int]:
    """``(top, left)`` of the test crop: a ``size`` x ``size`` square in the middle of the frame."""
    if size > height or size > width:
        raise ConfigError(f"data.crop={size} is larger than the frames ({height}x{width}); lower data.crop or raise data.short_side")
    return (height - size) // 2, (width - size) // 2


def _new_uint8(shape: tuple[int, ...]) -> torch.Tensor:
    """An uninitialised uint8 tensor; inside a DataLoader worker in shared memory (as ``default_collate``
    allocates its batches), so handing it to the training process copies nothing."""
    if get_worker_info() is None:
        return torch.empty(shape, dtype=torch.uint8)
    empty = torch.empty(0, dtype=torch.uint8)
    return empty.new(empty._typed_storage()._new_shared(math.prod(shape), device="cpu")).view(shape)


def frames_to_uint8_clip(frames: np.ndarray, window: int) -> torch.Tensor:
    """Cropped uint8 frames ``(t, h, w, 3)``, ``1 <= t <= window`` (an array or a slice of a memory map) ->
    uint8 clip ``(3, window, h, w)``; a window reaching past the end of its sequence repeats the last frame.

    The frames are copied once, in their channels-last order, into a new tensor (shared memory in a
    loader worker); the clip is a channels-first view of it. :func:`collate` hands such clips over as they
    are, and the transposition happens where the clip becomes float
    (:func:`mgtutor.data.augment.augment_clips`).
    """
    count = len(frames)
    out = _new_uint8((window, *frames.shape[1:]))
    array = out.numpy()
    array[:count] = frames
    array[count:] = array[count - 1]
    return rearrange(out, "t h w c -> c t h w")


def frames_to_clip(frames: np.ndarray, window: int) -> torch.Tensor:
    """Cropped uint8 frames ``(t, h, w, 3)``, ``1 <= t <= window`` -> float32 clip ``(3, window, h, w)`` in
    [-1, 1] (:func:`frames_to_uint8_clip`, then :func:`mgtutor.data.augment.to_float`). Online prediction
    builds its clips with this too, so both paths see the same numbers."""
    # channels first while still uint8 (cheap), so the float passes run over contiguous memory
    return to_float(frames_to_uint8_clip(frames, window).contiguous())


class WindowDataset(Dataset):
    """Windows of ``sequences`` cut by ``data_cfg``'s rules for ``split`` ("train" or "test").

    ``features``: items hold precomputed features of ``feature_dim`` channels instead of clips;
    ``augment``: random crops and ``data.augment`` (default: for "train"); ``uint8``: items hold the uint8
    crop and the augmentation's parameters, for :func:`model_inputs` to make float on the training device
    (training and prediction), instead of the float clip (what a notebook shows).
    """

    def __init__(
        self,
        sequences: Sequence[SequenceInfo],
        data_cfg: Any,
        split: str,
        features: bool = False,
        feature_dim: int | None = None,
        augment: bool | None = None,
        uint8: bool = False,
    ):
        if features and not data_cfg.features:
            raise ConfigError("model.encoder = 'features' needs data.features (the folder of precomputed SampleXXXX.npy features)")
        self.cfg = data_cfg
        self.split = split
        self.features = features
        self.feature_dim = feature_dim
        self.augment = split == "train" if augment is None else augment
        self.uint8 = uint8
        self.sequences = {seq.sample: seq for seq in sequences}
        self.windows: list[Window] = split_windows(sequences, data_cfg, split, align=FEATURE_STRIDE if features else 1)
        self._arrays: dict[int, np.ndarray | None] = {}

    @classmethod
    def from_config(cls, cfg: Any, split: str, uint8: bool = False) -> WindowDataset:
        """The ``split`` ("train", "val", "test" or "all": :meth:`mgtutor.config.DataConfig.subjects`) of
        a :class:`~mgtutor.config.Config`: its root (or the synthetic set it describes, made when missing),
        frames or features by ``model.encoder``; windows cut the training way for "train", else the
        test way; ``uint8`` as for the constructor."""
        from mgtutor.data.synthetic import configured_root

        sequences = load_root(configured_root(cfg.data), cfg.data.subjects(split))
        features = cfg.model.encoder == "features"
        cut = "train" if split == "train" else "test"
        return cls(sequences, cfg.data, cut, features=features, feature_dim=cfg.model.feature_dim, uint8=uint8)

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        w = self.windows[index]
        seq = self.sequences[w.sequence]
        total = num_sampled(seq.num_frames, seq.fps, self.cfg.fps)
        item: dict[str, Any] = {}
        if self.features:
            item["features"] = self._features(seq, w)
        else:
            clip, params = self._clip(seq, w, total)
            if self.uint8:
                item["clip"] = clip
                if params is not None:
                    item["augment"] = params
            else:
                item["clip"] = augment_clips(clip[None], None if params is None else params[None], self.cfg.augment)[0]
        item["segments"] = torch.from_numpy(w.segments.copy())
        item["labels"] = torch.from_numpy(w.labels.copy())
        item["meta"] = {
            "sequence": w.sequence, "start": w.start, "window": w.size, "fps": w.fps, "source_fps": w.source_fps,
            "num_frames": w.num_frames, "first_frame": w.first_frame, "length": max(0, min(w.size, total - w.start)),
        }  # fmt: skip
        return item

    # frames

    def _cached(self, seq: SequenceInfo) -> np.ndarray | None:
        if seq.sample not in self._arrays:
            cache = self.cfg.cache
            self._arrays[seq.sample] = open_cached(cache, seq, self.cfg.fps, self.cfg.short_side) if cache else None
        return self._arrays[seq.sample]

    def _crop_box(self, height: int, width: int) -> tuple[int, int]:
        size = self.cfg.crop
        centre = centre_box(height, width, size)  # also checks the crop fits
        if self.augment:
            return int(torch.randint(0, height - size + 1, ())), int(torch.randint(0, width - size + 1, ()))
        return centre

    def _clip(self, seq: SequenceInfo, w: Window, total: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The window's uint8 crop ``(3, T, H, W)`` and, when augmenting, its parameters ``(k,)``
        (drawn after the crop's position, in this order, from torch's global generator)."""
        stop = min(w.start + w.size, total)
        frames = self._cached(seq)
        if frames is None:
            frames = decode(seq.video, self.cfg.fps, seq.num_frames, seq.fps, short_side=self.cfg.short_side, start=w.start, count=stop - w.start)
            offset = w.start
        else:
            offset = 0
        top, left = self._crop_box(frames.shape[1], frames.shape[2])
        size = self.cfg.crop
        # slice before copying, so only the crop of the window is read from the memory map
        clip = frames_to_uint8_clip(frames[w.start - offset : stop - offset, top : top + size, left : left + size], w.size)
        params = draw_parameters(self.cfg.augment, self.cfg.jitter, self.cfg.flip) if self.augment else None
        return clip, params

    # features

    def _features(self, seq: SequenceInfo, w: Window) -> torch.Tensor:
        if seq.sample not in self._arrays:
            path = features_path(self.cfg.features, seq.sample)
            if not path.exists():
                raise DataError(path, f"file is missing: expected precomputed features of {seq.name}")
            array = np.load(path, mmap_mode="r")
            steps = features_length(seq.num_frames, seq.fps, self.cfg.fps)
            ok_steps = {steps, num_sampled(seq.num_frames, seq.fps, self.cfg.fps) // FEATURE_STRIDE}
            if array.ndim != 2 or array.shape[1] not in ok_steps or (self.feature_dim and array.shape[0] != self.feature_dim):
                raise DataError(path, f"expected features of shape ({self.feature_dim or 'feature_dim'}, {steps}), found {array.shape}")
            self._arrays[seq.sample] = array
        array = self._arrays[seq.sample]
        first, count = w.start // FEATURE_STRIDE, w.size // FEATURE_STRIDE
        part = np.asarray(array[:, first : first + count], dtype=np.float32)
        if part.shape[1] < count:
            part = np.concatenate([part, np.repeat(part[:, -1:], count - part.shape[1], axis=1)], axis=1)
        return torch.from_numpy(np.ascontiguousarray(part))


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    """``(b, ...)``. One tensor becomes a batch of one without a copy (in a loader worker it is already in
    shared memory when :func:`frames_to_uint8_clip` made it); several are stacked, in a loader worker
    straight into shared memory (``default_collate``), channels-first views of channels-last clips in
    their own memory order."""
    first = tensors[0]
    if len(tensors) == 1:
        return first[None]
    if first.ndim == 4 and first.stride(0) == 1 and not first.is_contiguous():  # (c, t, h, w) over (t, h, w, c)
        stacked = default_collate([rearrange(x, "c t h w -> t h w c") for x in tensors])
        return rearrange(stacked, "b t h w c -> b c t h w")
    return default_collate(tensors)


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack clips (or features) into a batch ``(b, ...)``, and augmentation parameters ``(b, k)`` when the
    items have them; segments, labels and meta stay lists, and ``"targets"`` pairs them as the losses expect
    (``[{"segments", "labels"}, ...]``)."""
    key = "features" if "features" in items[0] else "clip"
    batch = {
        key: _stack([item[key] for item in items]),
        "segments": [item["segments"] for item in items],
        "labels": [item["labels"] for item in items],
        "meta": [item["meta"] for item in items],
        "targets": [{"segments": item["segments"], "labels": item["labels"]} for item in items],
    }
    if "augment" in items[0]:
        batch["augment"] = torch.stack([item["augment"] for item in items])
    return batch


def model_inputs(batch: dict[str, Any], device: torch.device | str, augment: str = "jitter") -> torch.Tensor:
    """The model's input on ``device`` from a collated batch: features ``(b, feature_dim, t)`` as they are;
    clips ``(b, 3, T, H, W)`` copied as they come (uint8 from a ``uint8=True`` dataset: a quarter of the
    bytes; ``non_blocking`` from pinned memory), then made float in [-1, 1] and augmented there with
    the batch's ``"augment"`` parameters (:func:`mgtutor.data.augment.augment_clips`, ``augment`` =
    ``data.augment``)."""
    if "features" in batch:
        return batch["features"].to(device, non_blocking=True)
    clips = batch["clip"].to(device, non_blocking=True)
    if clips.dtype != torch.uint8 and "augment" not in batch:
        return clips
    return augment_clips(clips, batch.get("augment"), augment)
