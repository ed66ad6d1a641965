"""The torch Dataset of windows: clips (or precomputed features) with their ground truths.

An item (``WindowDataset[i]``) is a dict:
- ``"clip"``: float32 ``(3, T, H, W)`` in [-1, 1] (T = ``data.window_frames``, H = W = ``data.crop``), or in
  features mode ``"features"``: float32 ``(feature_dim, T // 4)``;
- ``"segments"``: float32 ``(g, 2)`` in window coordinates; ``"labels"``: int64 ``(g,)`` 0-based;
- ``"meta"``: ``sequence`` (sample id), ``start`` (first sampled position), ``window``, ``fps``,
  ``source_fps``, ``num_frames`` (original frames of the sequence), ``first_frame`` (original frame of
  the window's first sampled frame) and ``length`` (sampled frames of the window inside the video).

Frames come from the frame cache (``data.cache``, written by ``mgtutor prepare``) when it holds the
sequence, else they are decoded from the video on the fly (seeking to the window). Training clips get a
random crop and photometric jitter (brightness, contrast, saturation; flips only with ``data.flip``,
since some micro-gestures are side-specific); test clips a centre crop. A window reaching past the end
of a sequence repeats its last frame (or feature step).

Precomputed features live in ``<data.features>/SampleXXXX.npy``: float ``(feature_dim, ceil(T_seq / 4))``
where ``T_seq = num_sampled(numFrames, source_fps, data.fps)``; step ``j`` summarises sampled frames
``[4j, 4j + 4)`` (an encoder of stride 4 run over the whole sampled sequence, padded to a multiple of 4).
Windows then start at multiples of 4.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from einops import rearrange
from torch.utils.data import Dataset

from mgtutor.config import ENCODER_STRIDE, ConfigError
from mgtutor.data.cache import open_cached
from mgtutor.data.errors import DataError
from mgtutor.data.smg import SequenceInfo, load_root, sample_name
from mgtutor.data.video import decode
from mgtutor.data.windows import Window, num_sampled, split_windows

FEATURE_STRIDE = ENCODER_STRIDE  # sampled frames per feature step (the encoder's temporal stride)


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


def frames_to_clip(frames: np.ndarray, window: int) -> torch.Tensor:
    """Cropped uint8 frames ``(t, h, w, 3)``, ``1 <= t <= window`` -> float32 clip ``(3, window, h, w)`` in
    [-1, 1]; a window reaching past the end of its sequence repeats the last frame. Online prediction
    builds its clips with this too, so both paths see the same numbers."""
    if len(frames) < window:
        frames = np.concatenate([frames, np.repeat(frames[-1:], window - len(frames), axis=0)])
    # channels first while still uint8 (cheap), so the float passes run over contiguous memory
    channels_first = np.ascontiguousarray(rearrange(frames, "t h w c -> c t h w"))
    return torch.from_numpy(channels_first).float().div_(127.5).sub_(1.0)


class WindowDataset(Dataset):
    """Windows of ``sequences`` cut by ``data_cfg``'s rules for ``split`` ("train" or "test")."""

    def __init__(
        self,
        sequences: Sequence[SequenceInfo],
        data_cfg: Any,
        split: str,
        features: bool = False,
        feature_dim: int | None = None,
        augment: bool | None = None,
    ):
        if features and not data_cfg.features:
            raise ConfigError("model.encoder = 'features' needs data.features (the folder of precomputed SampleXXXX.npy features)")
        self.cfg = data_cfg
        self.split = split
        self.features = features
        self.feature_dim = feature_dim
        self.augment = split == "train" if augment is None else augment
        self.sequences = {seq.sample: seq for seq in sequences}
        self.windows: list[Window] = split_windows(sequences, data_cfg, split, align=FEATURE_STRIDE if features else 1)
        self._arrays: dict[int, np.ndarray | None] = {}

    @classmethod
    def from_config(cls, cfg: Any, split: str) -> WindowDataset:
        """The ``split`` of a :class:`~mgtutor.config.Config`: its root (or the synthetic set it
        describes, made when missing), its subjects, frames or features by ``model.encoder``."""
        from mgtutor.data.synthetic import ensure_synthetic

        root = cfg.data.root or ensure_synthetic(cfg.data)
        subjects = cfg.data.train_subjects if split == "train" else cfg.data.test_subjects
        features = cfg.model.encoder == "features"
        return cls(load_root(root, subjects), cfg.data, split, features=features, feature_dim=cfg.model.feature_dim)

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
            item["clip"] = self._clip(seq, w, total)
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

    def _clip(self, seq: SequenceInfo, w: Window, total: int) -> torch.Tensor:
        stop = min(w.start + w.size, total)
        frames = self._cached(seq)
        if frames is None:
            frames = decode(seq.video, self.cfg.fps, seq.num_frames, seq.fps, short_side=self.cfg.short_side, start=w.start, count=stop - w.start)
            offset = w.start
        else:
            offset = 0
        top, left = self._crop_box(frames.shape[1], frames.shape[2])
        size = self.cfg.crop
        # slice before converting, so only the crop of the window is read from the memory map
        clip = frames_to_clip(frames[w.start - offset : stop - offset, top : top + size, left : left + size], w.size)
        if self.augment:
            clip = self._jitter(clip)
            if self.cfg.flip and torch.rand(()) < 0.5:
                clip = clip.flip(-1)
        return clip

    def _jitter(self, clip: torch.Tensor) -> torch.Tensor:
        """One random saturation, contrast and brightness change for the whole clip ``(3, T, H, W)``, in place.

        Saturation ``s`` blends each pixel with its grey ``g``, contrast ``c`` scales around the clip's mean
        ``m`` (which the saturation change leaves as it is), brightness ``b`` shifts:
        ``(1 + c)(1 + s) x - (1 + c) s g - c m + b``, computed in three passes over the clip.
        """
        strength = self.cfg.jitter
        if strength <= 0:
            return clip
        brightness, contrast, saturation = ((torch.rand(3) * 2 - 1) * strength).tolist()
        grey = clip.mean(0)
        mean = grey.mean().item()
        clip.mul_((1 + contrast) * (1 + saturation)).add_(grey, alpha=-(1 + contrast) * saturation)
        return clip.add_(brightness - contrast * mean).clamp_(-1.0, 1.0)

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


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack clips (or features) into a batch ``(b, ...)``; segments, labels and meta stay lists, and
    ``"targets"`` pairs them as the losses expect (``[{"segments", "labels"}, ...]``)."""
    key = "features" if "features" in items[0] else "clip"
    return {
        key: torch.stack([item[key] for item in items]),
        "segments": [item["segments"] for item in items],
        "labels": [item["labels"] for item in items],
        "meta": [item["meta"] for item in items],
        "targets": [{"segments": item["segments"], "labels": item["labels"]} for item in items],
    }
