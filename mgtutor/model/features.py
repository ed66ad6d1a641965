"""Features once: the frozen Kinetics-400 I3D run over every sequence of a root, written where the
dataset's features mode reads them (``mgtutor extract-features``).

Glossary: T sampled frames of a sequence (at ``fps``), n = ceil(T / 4) feature steps, W frames a window,
S frames between window starts, b windows a batch, c = 1856 channels (Mixed_4f's 832 and Mixed_5c's 1024,
each averaged over space: :meth:`mgtutor.model.encoder.I3DEncoder.features`, the paper's encoder before
its trained projection).

Each sequence's frames (from the frame cache of ``mgtutor prepare`` when given, else decoded) get the
test split's centre crop and are cut into windows of W frames every S (S = W / 2 by default; the last
window ends at the sequence's end; frames past the end repeat the last one, as the dataset pads). I3D
(temporal stride 4) turns a window into W / 4 steps, and step ``j`` of the file comes from the window
whose centre is nearest to it (:func:`owned_steps`): every step then sees at least (W - S) / 2 frames of
context on either side, except at the sequence's ends. I3D pads its input at a window's edges, so an
edge step would differ from the same step inside a longer clip; the overlap keeps those edges out.

Layout (:func:`mgtutor.data.dataset.features_path`)::

    features.json      the settings: {"format": 1, "encoder": "i3d", "feature_dim": 1856, "fps": 10.0, ...}
    Sample0001.npy     float32 (1856, n), step j summarising sampled frames [4j, 4j + 4)

Each ``.npy`` is written under a temporary name and renamed when complete, so a killed run never leaves
a file that looks finished; a rerun skips the finished sequences, and a folder made with other settings
is refused. A detector trained on these files (``model.encoder = "features"``, ``model.feature_dim =
1856``, ``data.features`` = the folder; ``configs/smg_paper_features.yaml``) is the paper's detector with
its I3D backbone frozen: :class:`~mgtutor.model.encoder.FeatureEncoder`'s 1x1 convolution of the
concatenation is the sum of :class:`~mgtutor.model.encoder.I3DEncoder`'s two projections.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from mgtutor.data.augment import to_float
from mgtutor.data.cache import open_cached
from mgtutor.data.dataset import FEATURE_STRIDE, centre_box, features_length, features_path
from mgtutor.data.errors import DataError
from mgtutor.data.smg import SequenceInfo, load_root
from mgtutor.data.video import check_length, count_frames, iter_frames
from mgtutor.data.windows import num_sampled, window_starts
from mgtutor.files import atomic_path, check_output_folder, write_atomic
from mgtutor.model.encoder import I3DEncoder, extract_features

FEATURES_META = "features.json"
FEATURES_FORMAT = 1


def owned_steps(starts: Sequence[int], window_steps: int, steps: int) -> list[tuple[int, int]]:
    """The feature steps ``[lo, hi)`` each window supplies: the steps nearer its centre than any other's.

    ``starts``: the windows' first steps, increasing, consecutive ones at most ``window_steps`` apart;
    ``window_steps``: steps a window yields; ``steps``: n, the sequence's steps. Neighbours split the
    overlap at the midpoint of their centres, so the ranges tile ``[0, n)``; a range may be empty.
    """
    bounds = [0]
    for first, second in zip(starts, starts[1:]):
        if not 0 < second - first <= window_steps:
            raise ValueError(f"window starts {first} and {second} must increase by at most {window_steps} steps")
        bounds.append(min((first + second + window_steps) // 2, steps))
    bounds.append(steps)
    return list(zip(bounds, bounds[1:]))


def _check_meta(out: Path, settings: dict) -> None:
    """Refuse a folder whose features were made with other settings (mixing them would be silent)."""
    meta = out / FEATURES_META
    if meta.exists():
        try:
            found = json.loads(meta.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(meta, f"not valid JSON ({err}): not a features folder of mgtutor extract-features; use another --out") from None
        if not isinstance(found, dict):
            raise DataError(meta, "expected an object of settings: not a features folder of mgtutor extract-features; use another --out")
        if found != settings:
            changed = ", ".join(f"{k}: {found.get(k)!r} there, {v!r} now" for k, v in settings.items() if found.get(k) != v)
            raise DataError(meta, f"this folder holds features made with other settings ({changed}); use another --out or the same settings")
    write_atomic(meta, json.dumps(settings) + "\n")


def _is_finished(path: Path, shape: tuple[int, int]) -> bool:
    if not path.exists():
        return False
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError):
        return False
    return array.shape == shape and array.dtype == np.float32


def _fingerprint(path: Path) -> str:
    """The first 16 hex digits of the weights file's SHA-256, recorded in features.json."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def sequence_frames(seq: SequenceInfo, fps: float, short_side: int, crop: int, cache: str | Path | None = None) -> Iterator[np.ndarray]:
    """The centre-cropped uint8 frames ``(crop, crop, 3)`` of sampled positions 0 .. T - 1, in order: from
    the frame cache when it holds the sequence, else decoded. A video that ends early repeats its last frame
    when :func:`mgtutor.data.video.check_length` (the rule ``mgtutor prepare`` and ``check-data`` apply)
    allows it, else raises DataError."""
    total = num_sampled(seq.num_frames, seq.fps, fps)
    cached = open_cached(cache, seq, fps, short_side) if cache else None
    if cached is not None:
        top, left = centre_box(cached.shape[1], cached.shape[2], crop)
        for k in range(total):
            yield np.asarray(cached[k, top : top + crop, left : left + crop])
        return
    written, image = 0, None
    for k, image in iter_frames(seq.video, fps, seq.fps, short_side=short_side, stop=total):
        top, left = centre_box(image.shape[0], image.shape[1], crop)
        image = image[top : top + crop, left : left + crop]
        written = k + 1
        yield image
    missing = total - written
    if missing > 0:
        check_length(seq.video, count_frames(seq.video), seq.num_frames, seq.fps)
        if written == 0:
            raise DataError(seq.video, f"no frame could be decoded (numFrames={seq.num_frames} in _data.csv)")
    for _ in range(missing):
        yield image


def sequence_windows(total: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """``(first frame, lo, hi)`` of the windows that supply steps for a sequence of ``total`` sampled frames:
    windows every ``stride`` frames plus one ending at the (4-padded) end, those supplying no step left out."""
    steps = -(-total // FEATURE_STRIDE)
    starts = window_starts(steps * FEATURE_STRIDE, window, stride, end_aligned=True, align=FEATURE_STRIDE)
    owned = owned_steps([s // FEATURE_STRIDE for s in starts], window // FEATURE_STRIDE, steps)
    return [(start, lo, hi) for start, (lo, hi) in zip(starts, owned) if hi > lo]


@torch.no_grad()
def sequence_features(
    encoder: I3DEncoder,
    frames: Iterator[np.ndarray],
    total: int,
    window: int = 128,
    stride: int | None = None,
    batch_size: int = 4,
    device: torch.device | str = "cpu",
    on_window=None,
) -> np.ndarray:
    """I3D features ``(c, ceil(total / 4))`` float32 of one sequence whose ``total`` uint8 frames ``frames``
    yields in order (module docstring: windows, and which window supplies each step).

    Windows go through ``encoder`` ``batch_size`` at a time, as uint8 to ``device`` and made float there,
    under bf16 autocast on CUDA; only the frames of the windows still to come are kept in memory.
    ``on_window()`` is called once a window (a progress bar's update).
    """
    device = torch.device(device)
    stride = stride or window // 2
    check_windows(window, stride)
    jobs = sequence_windows(total, window, stride)
    out = np.empty((encoder.feature_channels, -(-total // FEATURE_STRIDE)), dtype=np.float32)
    buffer: list[np.ndarray] = []  # frames base, base + 1, ...
    base = 0
    amp = device.type == "cuda"
    for first in range(0, len(jobs), batch_size):
        batch = jobs[first : first + batch_size]
        needed = min(batch[-1][0] + window, total)
        while base + len(buffer) < needed:
            buffer.append(next(frames))
        # frames past the end repeat the last one
        clips = np.stack([np.stack([buffer[min(k, total - 1) - base] for k in range(start, start + window)]) for start, _, _ in batch])
        x = to_float(rearrange(torch.from_numpy(clips).to(device, non_blocking=True), "b t h w c -> b c t h w")).contiguous()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            features = extract_features(encoder, x).float().cpu().numpy()  # (b, c, window / 4)
        for (start, lo, hi), one in zip(batch, features):
            offset = start // FEATURE_STRIDE
            out[:, lo:hi] = one[:, lo - offset : hi - offset]
            if on_window is not None:
                on_window()
        if first + batch_size < len(jobs):  # drop the frames no later window reads
            keep = jobs[first + batch_size][0]
            del buffer[: max(0, keep - base)]
            base = max(base, keep)
    return out


def check_windows(window: int, stride: int) -> None:
    """ValueError unless ``window`` and ``stride`` (frames) are positive multiples of the encoder's stride
    with ``stride <= window`` (every step then lies in some window)."""
    if window <= 0 or stride <= 0 or window % FEATURE_STRIDE or stride % FEATURE_STRIDE or stride > window:
        raise ValueError(f"--window ({window}) and --stride ({stride}) must be positive multiples of {FEATURE_STRIDE} with stride <= window")


def _write(array: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array)


def write_features(
    root: str | Path,
    out: str | Path,
    weights: str | Path | None,
    *,
    subjects: Sequence[int] | None = None,
    fps: float = 10.0,
    short_side: int = 256,
    crop: int = 224,
    window: int = 128,
    stride: int | None = None,
    cache: str | Path | None = None,
    batch_size: int = 4,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> list[Path]:
    """Write the I3D features of every sequence of ``root`` (or of ``subjects``) into ``out``; returns the
    ``.npy`` paths (module docstring: layout, windows, resuming).

    ``weights``: converted Kinetics-400 weights (``mgtutor convert-i3d``); None leaves I3D at its random
    initialisation (speed measurements, tests). ``fps``, ``short_side`` and ``crop`` must match the
    training configuration's ``data`` (``cache``: a frame cache of ``root`` made with the same ``fps``
    and ``short_side``). ``device``: default CUDA when present. Finished sequences are skipped.
    """
    from mgtutor.model.i3d_weights import load_i3d_weights
    from mgtutor.runtime import default_device

    out = check_output_folder(out, "the features")
    device = torch.device(device) if device is not None else default_device()
    stride = stride or window // 2
    check_windows(window, stride)
    if crop > short_side:
        raise ValueError(f"--crop ({crop}) must not exceed --short-side ({short_side}): the crop is cut from frames that size")
    sequences = load_root(root, subjects)
    encoder = I3DEncoder()
    if weights is not None:
        weights = Path(weights)
        load_i3d_weights(encoder.backbone, weights)  # FileNotFoundError names `mgtutor convert-i3d`
    encoder.freeze().eval().to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every window has one shape
    settings = {
        "format": FEATURES_FORMAT, "encoder": "i3d", "endpoints": ["Mixed_4f", "Mixed_5c"], "feature_dim": encoder.feature_channels,
        "stride": FEATURE_STRIDE, "fps": float(fps), "short_side": int(short_side), "crop": int(crop), "window": int(window),
        "window_stride": int(stride), "weights": None if weights is None else f"{weights.name} sha256:{_fingerprint(weights)}",
    }  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    _check_meta(out, settings)
    paths, todo = [], []
    for seq in sequences:
        path = features_path(out, seq.sample)
        paths.append(path)
        if not _is_finished(path, (encoder.feature_channels, features_length(seq.num_frames, seq.fps, fps))):
            todo.append((seq, path))
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        windows = sum(len(sequence_windows(num_sampled(s.num_frames, s.fps, fps), window, stride)) for s, _ in todo)
        bar = tqdm(total=windows, unit="window", desc="extract-features")
    try:
        for seq, path in todo:
            if bar is not None:
                bar.set_postfix_str(seq.name)
            total = num_sampled(seq.num_frames, seq.fps, fps)
            frames = sequence_frames(seq, fps, short_side, crop, cache)
            array = sequence_features(encoder, frames, total, window, stride, batch_size, device, bar.update if bar is not None else None)
            _write(array, path)
    finally:
        if bar is not None:
            bar.close()
    return paths
