"""Training-step speed and memory: PointTAD's self-attention decoder against Mamba-MHSA, and the whole model.

    python benchmarks/train_step.py                  # both parts at this device's sizes
    python benchmarks/train_step.py --part decoder   # (a) only
    python benchmarks/train_step.py --part features  # (c) only
    python benchmarks/train_step.py --part extract --crop 224 --extract-windows 3   # (c)'s extraction alone
    python benchmarks/train_step.py --quick          # tiny sizes, seconds (what the tests run)
    python benchmarks/train_step.py --json step.json --readme benchmarks/README.md

(a) The decoder at the paper's configuration (48 queries of 30 points, 4 layers, hidden 512) on
    precomputed features (batch 1, 32 feature steps = a 128-frame window): the detector in "features"
    mode, the set-prediction loss (Hungarian matching for every layer) and the backward pass, with
    ``mamba_blocks = 0`` (PointTAD's self-attention) and ``2`` (the paper's Mamba-MHSA). The query mixer
    alone (the only part that differs) is timed too. Variants are built from the same seed and timed
    interleaved (A, B, A, B, ...), so load on the machine hits them alike; each time is the median of
    ``--repeats``.
(b) The whole model, I3D and the decoder with N_m = 2, on windows of 128 frames at ``--crop`` pixels
    (224 on CUDA; 64 on the CPU, where a 224 window takes minutes): one full training step exactly as
    :meth:`mgtutor.train.Trainer.train_step` runs it (host-to-device copy, forward under bf16 autocast
    with TF32 on CUDA, loss, backward, gradient clipping, AdamW). On CUDA, ``cudnn.benchmark`` is on and
    I3D runs in ``channels_last_3d`` unless told otherwise; ``--batch 1 4`` measures several batch sizes.

(c) Features once against end to end: the full training step of (b) (batch 1) against the same step of
    the detector in "features" mode on I3D's 1856-channel features (``configs/smg_paper_features.yaml``:
    the decoder trains, I3D ran once beforehand), timed interleaved; and the extraction itself,
    :func:`mgtutor.model.features.sequence_features` over a sequence of random frames (windows of
    ``--window`` frames every half window, at (b)'s crop, batch ``--extract-batch``, bf16 on CUDA), in
    I3D windows a second and seconds of 10 fps video a second.

Peak memory. CUDA: ``torch.cuda.max_memory_allocated`` over one step (weights, gradients, optimiser state
and activations: all the allocator holds). CPU: the tensor storages created during one step and alive at
once (``mgtutor.ssm.benchmark.PeakTensorMemory``, which watches every operation's outputs; weights and
optimiser state made before the step are not in it). tracemalloc would see none of it: torch allocates
outside Python's allocator.

FLOPs (``benchmarks/flops.py``): the step's counted operations and the floor time on this device's
matrix-product rate, measured in the same run; achieved throughput is reported as a fraction of it. With
``--profile`` on CUDA the script also prints where a step's time goes (top kernels, GPU idle time between
kernels, host synchronisations, the loss's share, which includes the Hungarian matching's
device-to-host copies).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from flops import by_part, format_flops_table, format_rate, matmul_rate, step_flops, training_dtype  # noqa: E402
from report import machine_line, write_section  # noqa: E402

import mgtutor.train.losses as losses_module  # noqa: E402
from mgtutor.config import Config, DataConfig, ModelConfig, TrainConfig  # noqa: E402
from mgtutor.data.dataset import collate  # noqa: E402
from mgtutor.model.detector import Detector, DetectorOutput  # noqa: E402
from mgtutor.model.encoder import I3DEncoder  # noqa: E402
from mgtutor.model.features import sequence_features, sequence_windows  # noqa: E402
from mgtutor.model.mamba_mhsa import MambaMHSA  # noqa: E402
from mgtutor.runtime import seed_everything  # noqa: E402
from mgtutor.ssm.benchmark import PeakTensorMemory  # noqa: E402
from mgtutor.train.distributed import DistributedContext  # noqa: E402
from mgtutor.train.engine import Trainer  # noqa: E402
from mgtutor.train.losses import SetCriterion  # noqa: E402

SECTION = "## Training step"
CPU_GOAL = 1.25  # the Mamba-MHSA decoder step may cost at most this many times the attention decoder's
# --quick: every size small enough that both parts run in seconds on a busy CPU
QUICK = dict(hidden=64, queries=8, points=6, layers=2, heads=4, ffn=128, mix_dim=8, boundary_points=2, feature_dim=32)


@dataclass
class Row:
    """One measured case: its step times (seconds), peak memory (bytes) and case details (``extra``)."""

    part: str
    name: str
    batch: int
    times: list[float]
    peak_bytes: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def windows_per_s(self) -> float:
        return self.batch / self.median


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_targets(batch: int, num_classes: int, gestures: int = 3, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``gestures`` ground-truth segments a window, at random places (the matching's work depends on g)."""
    gen = torch.Generator().manual_seed(seed)
    targets = []
    for _ in range(batch):
        starts = torch.rand(gestures, generator=gen) * 0.8
        ends = starts + 0.05 + 0.15 * torch.rand(gestures, generator=gen)
        labels = torch.randint(0, num_classes, (gestures,), generator=gen)
        targets.append({"segments": torch.stack([starts, ends], dim=1), "labels": labels})
    return targets


def float32_output(output: DetectorOutput) -> DetectorOutput:
    """The losses run in float32 whatever the autocast dtype, as the training engine does."""
    changes = {
        f.name: value.float()
        for f in dataclasses.fields(output)
        if isinstance(value := getattr(output, f.name), torch.Tensor)
    }
    return replace(output, **changes)


# -- (a) the decoder -----------------------------------------------------------------------------------


class DecoderStep:
    """Forward (autocast on CUDA), set-prediction loss and backward of the detector on features."""

    def __init__(self, cfg: ModelConfig, device: torch.device, window: int, seed: int = 0):
        seed_everything(seed)
        self.device = device
        self.model = Detector(replace(cfg, encoder="features")).to(device).train()
        self.criterion = SetCriterion(TrainConfig(), cfg.num_classes).to(device)
        gen = torch.Generator().manual_seed(seed)
        self.features = torch.randn(1, cfg.feature_dim, window // 4, generator=gen).to(device)
        self.targets = [{k: v.to(device) for k, v in t.items()} for t in random_targets(1, cfg.num_classes, seed=seed)]
        self.amp = training_dtype(device) if device.type == "cuda" else None

    def __call__(self) -> None:
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            output = self.model(self.features)
        self.criterion(float32_output(output), self.targets)["total"].backward()
        self.model.zero_grad(set_to_none=True)


class MixerStep:
    """Forward and backward of one layer's query mixer (MambaMHSA) on (1, q, d) query vectors."""

    def __init__(self, cfg: ModelConfig, device: torch.device, seed: int = 0):
        seed_everything(seed)
        self.device = device
        self.mixer = MambaMHSA(
            cfg.hidden, heads=cfg.heads, dropout=cfg.dropout, mamba_blocks=cfg.mamba_blocks, order=cfg.query_order,
            d_state=cfg.d_state, d_conv=cfg.d_conv, expand=cfg.expand, backend=cfg.mamba_backend,
        ).to(device).train()  # fmt: skip
        gen = torch.Generator().manual_seed(seed)
        self.query = torch.randn(1, cfg.queries, cfg.hidden, generator=gen).to(device).requires_grad_()
        self.amp = training_dtype(device) if device.type == "cuda" else None

    def __call__(self) -> None:
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            out = self.mixer(self.query)
        out.float().square().mean().backward()
        self.mixer.zero_grad(set_to_none=True)
        self.query.grad = None


def time_interleaved(steps: dict[str, Callable[[], None]], repeats: int, warmup: int, device: torch.device) -> dict[str, list[float]]:
    """Seconds of each step, run in turn (A, B, C, A, B, C, ...) after ``warmup`` untimed rounds."""
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            synchronize(device)
            start = time.perf_counter()
            step()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return times


def peak_memory(step: Callable[[], None], device: torch.device) -> int:
    """Peak bytes of one step (module docstring: what each device's figure holds)."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        synchronize(device)
        return torch.cuda.max_memory_allocated(device)
    with PeakTensorMemory() as counter:
        step()
    return counter.peak


def decoder_part(cfg: ModelConfig, device: torch.device, window: int, repeats: int, warmup: int, log=print) -> list[Row]:
    """(a): the detector on features and the query mixer alone, N_m = 0 against the configuration's N_m."""
    variants = {"attention (N_m = 0)": 0, f"Mamba-MHSA (N_m = {cfg.mamba_blocks or 2})": cfg.mamba_blocks or 2}
    steps: dict[str, Callable[[], None]] = {}
    for label, blocks in variants.items():
        steps[f"decoder step: {label}"] = DecoderStep(replace(cfg, mamba_blocks=blocks), device, window)
        steps[f"query mixer alone: {label}"] = MixerStep(replace(cfg, mamba_blocks=blocks), device)
    log(f"(a) timing {len(steps)} cases interleaved, {warmup} warm-up + {repeats} repeats")
    times = time_interleaved(steps, repeats, warmup, device)
    rows = []
    for name, step in steps.items():
        part, label = name.split(": ", 1)
        rows.append(Row(part, label, 1, times[name], peak_memory(step, device)))
    return rows


def decoder_ratio(rows: list[Row], part: str = "decoder step") -> float:
    """Median step time of Mamba-MHSA over that of the attention decoder (the CPU goal is <= 1.25)."""
    attention, mamba = (r for r in rows if r.part == part)
    return mamba.median / attention.median


def cpu_op_profile(steps: dict[str, Callable[[], None]], rounds: int = 2, top: int = 12) -> str:
    """Top operators by self CPU time for each step, side by side (torch.profiler), to see where the
    Mamba-MHSA decoder's extra time goes."""
    from torch.profiler import ProfilerActivity, profile

    totals: dict[str, dict[str, float]] = {}
    for name, step in steps.items():
        step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(rounds):
                step()
        totals[name] = {e.key: e.self_cpu_time_total / rounds / 1e3 for e in prof.key_averages()}
    names = list(totals)
    keys = sorted({k for t in totals.values() for k in t}, key=lambda k: -max(t.get(k, 0.0) for t in totals.values()))[:top]
    lines = ["| operator | " + " | ".join(f"{n} ms" for n in names) + " |", "|---|" + "---:|" * len(names)]
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(f"{totals[n].get(key, 0.0):.1f}" for n in names) + " |")
    lines.append("| **all operators** | " + " | ".join(f"**{sum(totals[n].values()):.1f}**" for n in names) + " |")
    return "\n".join(lines)


# -- (b) the whole model ---------------------------------------------------------------------------------


@dataclass
class ModelCase:
    batch: int
    channels_last: bool


class _Timed:
    """Wraps a callable and adds the seconds each call takes (synchronising first on CUDA, so the time is
    the call's own and not that of the work queued before it)."""

    def __init__(self, fn: Callable, device: torch.device):
        self.fn, self.device, self.seconds, self.calls = fn, device, 0.0, 0

    def __call__(self, *args, **kwargs):
        synchronize(self.device)
        start = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1


def make_trainer(cfg: ModelConfig, device: torch.device, batch: int, window: int, crop: int, out: str) -> tuple[Trainer, dict]:
    """A :class:`~mgtutor.train.Trainer` of the paper's optimisation and one collated batch of random clips."""
    config = Config(
        data=DataConfig(window=window, crop=crop, num_workers=0),
        model=cfg,
        train=TrainConfig(batch_size=batch, amp="bf16", tf32=True, out=out),
    )
    seed_everything(0)
    targets = random_targets(batch, cfg.num_classes)
    gen = torch.Generator().manual_seed(0)
    items = [
        {"clip": torch.rand(3, window, crop, crop, generator=gen) * 2 - 1, **target, "meta": {}}
        for target in targets
    ]
    model = Detector(cfg)
    trainer = Trainer(config, model, SetCriterion(config.train, cfg.num_classes), items, context=DistributedContext(device=device), progress=False)
    batch_dict = collate(items)
    if device.type == "cuda":
        batch_dict["clip"] = batch_dict["clip"].pin_memory()  # as the DataLoader's pin_memory gives it
    return trainer, batch_dict


def _use_channels_last(trainer: Trainer, batch: dict) -> None:
    trainer.model.to(memory_format=torch.channels_last_3d)
    clip = batch["clip"].contiguous(memory_format=torch.channels_last_3d)
    batch["clip"] = clip.pin_memory() if batch["clip"].is_pinned() else clip


def _compile(trainer: Trainer, batch: dict, log) -> str:
    """Swap in ``torch.compile``'s version of the model; keep eager when compiling fails."""
    eager = trainer.ddp_model
    start = time.perf_counter()
    try:
        trainer.ddp_model = torch.compile(trainer.model)
        trainer.train_step(batch)
    except Exception as err:  # any failure inside the compiler: report it and measure eager
        trainer.ddp_model = eager
        log(f"torch.compile failed, measuring eager: {type(err).__name__}: {str(err).splitlines()[0][:200]}")
        return "failed (eager measured)"
    return f"compiled in {time.perf_counter() - start:.0f} s"


def model_part(
    cfg: ModelConfig, device: torch.device, cases: list[ModelCase], window: int, crop: int, repeats: int, warmup: int,
    compile_model: bool = False, profile_steps: int = 0, log=print, on_row: Callable[[list[Row]], None] | None = None,
) -> list[Row]:  # fmt: skip
    """(b): full training steps of the whole model, one case (batch size, memory layout) after another;
    ``on_row(rows so far)`` after each case (the script saves its JSON then, so a run stopped at a time
    limit keeps the cases it finished)."""
    rows = []
    for case in cases:
        with tempfile.TemporaryDirectory() as out:
            trainer, batch = make_trainer(cfg, device, case.batch, window, crop, out)
            if case.channels_last:
                _use_channels_last(trainer, batch)
            name = f"batch {case.batch}" + (", channels_last_3d" if case.channels_last else "")
            extra = {"crop": crop, "window": window, "channels_last": case.channels_last}
            if compile_model:
                extra["compile"] = _compile(trainer, batch, log)
            log(f"(b) {name}: {warmup} warm-up + {repeats} steps")
            for _ in range(warmup):
                trainer.train_step(batch)
            if device.type == "cuda":
                times = time_interleaved({name: lambda: trainer.train_step(batch)}, repeats, 0, device)[name]
                extra["loss_share"], extra["matching_share"] = loss_shares(trainer, batch, device)
            else:  # synchronising is free here, so the timed steps themselves give the shares
                with _timing_loss(trainer, device) as (criterion, matching):
                    times = time_interleaved({name: lambda: trainer.train_step(batch)}, repeats, 0, device)[name]
                extra["loss_share"], extra["matching_share"] = criterion.seconds / sum(times), matching.seconds / sum(times)
            row = Row("whole model", name, case.batch, times, peak_memory(lambda: trainer.train_step(batch), device), extra)
            if profile_steps and device.type == "cuda":
                row.extra["profile"] = cuda_profile(lambda: trainer.train_step(batch), profile_steps, device)
            rows.append(row)
            if on_row is not None:
                on_row(rows)
            del trainer, batch
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


# -- (c) features once against end to end ------------------------------------------------------------------

I3D_FEATURES = 1856  # Mixed_4f (832) + Mixed_5c (1024): what mgtutor extract-features writes


def make_features_trainer(cfg: ModelConfig, device: torch.device, batch: int, window: int, out: str) -> tuple[Trainer, dict]:
    """The (b) trainer's twin in features mode: the same decoder and optimisation on random I3D features."""
    features_cfg = replace(cfg, encoder="features", feature_dim=I3D_FEATURES, encoder_weights=None)
    config = Config(data=DataConfig(window=window, num_workers=0), model=features_cfg, train=TrainConfig(batch_size=batch, amp="bf16", tf32=True, out=out))
    seed_everything(0)
    targets = random_targets(batch, cfg.num_classes)
    gen = torch.Generator().manual_seed(0)
    items = [{"features": torch.randn(I3D_FEATURES, window // 4, generator=gen), **target, "meta": {}} for target in targets]
    trainer = Trainer(config, Detector(features_cfg), SetCriterion(config.train, cfg.num_classes), items, context=DistributedContext(device=device), progress=False)
    batch_dict = collate(items)
    if device.type == "cuda":
        batch_dict["features"] = batch_dict["features"].pin_memory()
    return trainer, batch_dict


def features_part(cfg: ModelConfig, device: torch.device, window: int, crop: int, repeats: int, warmup: int, log=print) -> list[Row]:
    """(c): one full training step end to end (I3D + decoder) and in features mode, batch 1, interleaved."""
    with tempfile.TemporaryDirectory() as out:
        e2e, e2e_batch = make_trainer(cfg, device, 1, window, crop, f"{out}/e2e")
        feat, feat_batch = make_features_trainer(cfg, device, 1, window, f"{out}/features")
        steps = {
            "end to end (I3D + decoder)": lambda: e2e.train_step(e2e_batch),
            "features mode (decoder on I3D features)": lambda: feat.train_step(feat_batch),
        }
        log(f"(c) timing the end-to-end and features-mode steps interleaved, {warmup} warm-up + {repeats} repeats")
        times = time_interleaved(steps, repeats, warmup, device)
        return [Row("features", name, 1, times[name], peak_memory(step, device), {"crop": crop}) for name, step in steps.items()]


def extraction_rate(device: torch.device, window: int, crop: int, batch: int, windows: int, weights: str | None = None, fps: float = 10.0) -> dict:
    """Speed of ``mgtutor extract-features``' model part: :func:`sequence_features` (frozen I3D, windows every
    half window, uint8 frames made float on the device) over a sequence of random frames long enough for
    ``windows`` windows, after one untimed window."""
    encoder = I3DEncoder()
    if weights:
        from mgtutor.model.i3d_weights import load_i3d_weights

        load_i3d_weights(encoder.backbone, weights)
    encoder.freeze().eval().to(device)
    rng = torch.Generator().manual_seed(0)
    total = window + (windows - 1) * (window // 2)
    frames = [torch.randint(0, 256, (crop, crop, 3), dtype=torch.uint8, generator=rng).numpy() for _ in range(total)]
    sequence_features(encoder, iter(frames[:window]), window, window, None, 1, device)  # warm-up (cudnn.benchmark, allocator)
    jobs = len(sequence_windows(total, window, window // 2))
    synchronize(device)
    start = time.perf_counter()
    sequence_features(encoder, iter(frames), total, window, None, batch, device)
    synchronize(device)
    seconds = time.perf_counter() - start
    return {"windows": jobs, "seconds": seconds, "windows_per_s": jobs / seconds, "video_s_per_s": total / fps / seconds,
            "window": window, "crop": crop, "batch": batch, "weights": bool(weights)}  # fmt: skip


def format_features_table(rows: list[Row], absolute: bool) -> str:
    """(c) as a Markdown table: each step against the end-to-end one (absolute times only when ``absolute``)."""
    base = rows[0]
    lines = ["| step | crop | " + ("ms a step | windows/s | " if absolute else "") + "time vs end to end | peak MiB |"]
    lines.append("|---|---:|" + ("---:|---:|" if absolute else "") + "---:|---:|")
    for r in rows:
        timing = f"{1e3 * r.median:.1f} | {r.windows_per_s:.2f} | " if absolute else ""
        lines.append(f"| {r.name} | {r.extra['crop']} | {timing}{r.median / base.median:.3f}x | {_mib(r.peak_bytes)} |")
    return "\n".join(lines)


@contextmanager
def _timing_loss(trainer: Trainer, device: torch.device):
    """Time the criterion (with the matching inside it) and the matching alone, by wrapping both."""
    criterion, matching = trainer.criterion, losses_module.match_batch
    timed_criterion, timed_matching = _Timed(criterion, device), _Timed(matching, device)
    trainer.criterion, losses_module.match_batch = timed_criterion, timed_matching
    try:
        yield timed_criterion, timed_matching
    finally:
        trainer.criterion, losses_module.match_batch = criterion, matching


def loss_shares(trainer: Trainer, batch: dict, device: torch.device, steps: int = 3) -> tuple[float, float]:
    """Fractions of a step's time spent in the loss (set-prediction criterion) and in the Hungarian
    matching within it (cost matrices, their device-to-host copies, scipy's assignment).

    The step is run with the criterion and the matching wrapped by timers that synchronise before
    starting, so each share is the wall time of that part alone; on CUDA the GPU has nothing else to do
    meanwhile (the backward pass cannot start before the loss exists), so it is also GPU idle time.
    """
    with _timing_loss(trainer, device) as (criterion, matching):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step(batch)
        synchronize(device)
        total = time.perf_counter() - start
    return criterion.seconds / total, matching.seconds / total


# -- profile summary (CUDA) ------------------------------------------------------------------------------


def busy_fraction(intervals: list[tuple[float, float]]) -> tuple[float, float]:
    """(time covered by the union of [start, end) intervals, span from the first start to the last end)."""
    if not intervals:
        return 0.0, 0.0
    intervals = sorted(intervals)
    covered, (cur_start, cur_end) = 0.0, intervals[0]
    for start, end in intervals[1:]:
        if start > cur_end:
            covered += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    covered += cur_end - cur_start
    return covered, intervals[-1][1] - intervals[0][0]


SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy")


def summarise_profile(events, device_type: str, wall_s: float, steps: int, top: int = 10) -> dict:
    """Where the profiled steps' time went, from torch.profiler's events.

    ``device_type`` "cuda": kernels are the device events; "cpu" (for tests): operators stand in for them.
    Returns: ``top_kernels`` [(name, ms a step, share of kernel time)], ``kernel_ms`` (a step),
    ``busy`` (union of kernel time over the span of the profiled steps), ``idle`` = 1 - busy (the GPU
    waiting on the host: launch gaps, synchronisations, the matching), ``sync_ms`` (host time a step in
    synchronising calls and blocking copies).
    """
    kernels = [e for e in events if str(getattr(e, "device_type", "")).lower().endswith(device_type)]
    if device_type == "cpu":
        kernels = [e for e in kernels if e.cpu_parent is None]  # top-level operators only: no double counting
    by_name: dict[str, float] = {}
    intervals = []
    for e in kernels:
        start, end = e.time_range.start, e.time_range.end
        intervals.append((start, end))
        by_name[e.name] = by_name.get(e.name, 0.0) + (end - start)
    covered, span = busy_fraction(intervals)
    kernel_us = sum(by_name.values())
    ranked = sorted(by_name.items(), key=lambda kv: -kv[1])[:top]
    sync_us = sum(
        e.time_range.end - e.time_range.start
        for e in events
        if any(e.name.startswith(call) for call in SYNC_CALLS) and not str(getattr(e, "device_type", "")).lower().endswith("cuda")
    )
    span_s = max(span / 1e6, wall_s)
    return {
        "steps": steps,
        "wall_ms": 1e3 * wall_s / steps,
        "kernel_ms": kernel_us / 1e3 / steps,
        "busy": covered / 1e6 / span_s if span_s else 0.0,
        "idle": 1 - (covered / 1e6 / span_s if span_s else 0.0),
        "sync_ms": sync_us / 1e3 / steps,
        "top_kernels": [(name[:90], us / 1e3 / steps, us / kernel_us if kernel_us else 0.0) for name, us in ranked],
    }


def cuda_profile(step: Callable[[], None], steps: int, device: torch.device) -> dict:
    """Profile ``steps`` steps with torch.profiler (CPU and CUDA activities) and summarise them."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    synchronize(device)
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        wall = time.perf_counter() - start
    return summarise_profile(prof.events(), device.type, wall, steps)


def format_profile(summary: dict) -> str:
    lines = [
        f"profile of {summary['steps']} steps: {summary['wall_ms']:.1f} ms a step, kernels {summary['kernel_ms']:.1f} ms; "
        f"GPU busy {100 * summary['busy']:.0f}%, idle {100 * summary['idle']:.0f}% (launch gaps, host waits); "
        f"host in synchronising calls {summary['sync_ms']:.1f} ms a step",
        "| kernel | ms a step | share of kernel time |",
        "|---|---:|---:|",
    ]
    lines += [f"| `{name}` | {ms:.2f} | {100 * share:.1f}% |" for name, ms, share in summary["top_kernels"]]
    return "\n".join(lines)


# -- tables ------------------------------------------------------------------------------------------------


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value / 2**20:.0f}"


def format_decoder_table(rows: list[Row], absolute: bool) -> str:
    """(a) as a Markdown table: ratios to the attention variant; absolute times only when ``absolute``."""
    lines = ["| case | variant | " + ("median ms | " if absolute else "") + "time vs attention | peak MiB | memory vs attention |"]
    lines.append("|---|---|" + ("---:|" if absolute else "") + "---:|---:|---:|")
    for part in dict.fromkeys(r.part for r in rows):
        group = [r for r in rows if r.part == part]
        base = group[0]
        for r in group:
            ms = f"{1e3 * r.median:.1f} | " if absolute else ""
            mem_ratio = "-" if not (r.peak_bytes and base.peak_bytes) else f"{r.peak_bytes / base.peak_bytes:.2f}x"
            lines.append(f"| {part} | {r.name} | {ms}{r.median / base.median:.2f}x | {_mib(r.peak_bytes)} | {mem_ratio} |")
    return "\n".join(lines)


def format_model_table(rows: list[Row], flops_per_window: float | None, rate: float | None, absolute: bool) -> str:
    """(b) as a Markdown table: windows/s (absolute only when ``absolute``), peak memory, the loss's and
    the matching's share of the step, and the achieved fraction of the matrix-product floor."""
    head = "| case | crop | " + ("ms a step | windows/s | " if absolute else "") + "peak MiB | loss share | matching share | of floor |"
    lines = [head, "|---|---:|" + ("---:|---:|" if absolute else "") + "---:|---:|---:|---:|"]
    for r in rows:
        of_floor = "-"
        if flops_per_window and rate:
            of_floor = f"{100 * flops_per_window * r.windows_per_s / rate:.1f}%"
        timing = f"{1e3 * r.median:.1f} | {r.windows_per_s:.2f} | " if absolute else ""
        lines.append(
            f"| {r.name} | {r.extra['crop']} | {timing}{_mib(r.peak_bytes)} | {100 * r.extra['loss_share']:.2f}% | "
            f"{100 * r.extra['matching_share']:.2f}% | {of_floor} |"
        )
    return "\n".join(lines)


def _rows_json(rows: list[Row]) -> list[dict]:
    return [
        {"part": r.part, "name": r.name, "batch": r.batch, "times": r.times, "median_s": r.median,
         "windows_per_s": r.windows_per_s, "peak_bytes": r.peak_bytes, **r.extra}
        for r in rows
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("decoder", "model", "features", "extract", "all"), default="all",
                        help="(a) decoder, (b) model, (c) features (the steps and the extraction), extract (only the extraction)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="tiny model and window, one repeat: a smoke test")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, help="timed steps per case (default 9 for the decoder, 5 for the model; 10 on CUDA)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 1 on the CPU, 3 on CUDA)")
    parser.add_argument("--threads", type=int, help="torch threads on the CPU (default: torch's choice)")
    parser.add_argument("--window", type=int, default=128, help="frames per window (default 128)")
    parser.add_argument("--crop", type=int, help="crop size of (b) (default 224 on CUDA, 64 on the CPU)")
    parser.add_argument("--batch", type=int, nargs="+", help="batch sizes of (b) (default 1 4 on CUDA, 1 on the CPU)")
    parser.add_argument("--layout", choices=("channels_last", "contiguous", "both"), default="channels_last",
                        help="memory layout of I3D in (b) on CUDA (default channels_last)")  # fmt: skip
    parser.add_argument("--compile", action="store_true", help="(b) with torch.compile (falls back to eager on failure)")
    parser.add_argument("--weights", help="converted I3D weights for (b) and (c) (speed does not depend on them)")
    parser.add_argument("--extract-windows", type=int, help="I3D windows the extraction of (c) times (default 8; 3 with --quick)")
    parser.add_argument("--extract-batch", type=int, default=4, help="windows per forward pass of the extraction (default 4)")
    parser.add_argument("--mamba-backend", default=None, choices=("torch", "mamba_ssm", "auto"), help="default: auto on CUDA, torch on the CPU")
    parser.add_argument("--profile", action="store_true", help="profile (b) on CUDA; on the CPU profile (a)'s operators")
    parser.add_argument("--no-cudnn-benchmark", action="store_true", help="leave torch.backends.cudnn.benchmark off on CUDA")
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP count and the matrix-product rate")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--readme", type=Path, help="write the tables into this file's 'Training step' section")
    parser.add_argument("--note", default="", help="a sentence to put under the tables in the README")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    if cuda:
        torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
    backend = args.mamba_backend or ("auto" if cuda else "torch")
    cfg = ModelConfig(encoder="i3d", mamba_blocks=2, mamba_backend=backend, encoder_weights=args.weights)
    window = args.window
    crop = args.crop or (224 if cuda else 64)
    if args.quick:
        cfg = replace(cfg, **QUICK)
        window, crop = 16, args.crop or 32
    repeats_a = args.repeats or (1 if args.quick else 10 if cuda else 9)
    repeats_b = args.repeats or (1 if args.quick else 10 if cuda else 5)
    warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
    batches = args.batch or ([1, 4] if cuda and not args.quick else [1])
    layouts = {"channels_last": [True], "contiguous": [False], "both": [True, False]}[args.layout] if cuda else [False]
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731

    machine = machine_line(device)
    print(f"machine: {machine}", flush=True)
    results: dict = {"machine": machine, "device": device.type, "quick": args.quick, "mamba_backend": backend}
    absolute = cuda
    sections = []

    if args.part in ("decoder", "all"):
        rows = decoder_part(cfg, device, window, repeats_a, warmup, log)
        ratio = decoder_ratio(rows)
        mixer_ratio = decoder_ratio(rows, "query mixer alone")
        table = format_decoder_table(rows, absolute)
        head = (
            f"(a) decoder on features: batch 1, {window // 4} feature steps, {cfg.queries} queries x {cfg.points} points, "
            f"{cfg.layers} layers, hidden {cfg.hidden}; forward + loss + backward; median of {repeats_a}, interleaved"
        )
        verdict = f"Mamba-MHSA / attention decoder step: {ratio:.2f}x"
        if not cuda:
            verdict += f" (goal <= {CPU_GOAL}x: {'met' if ratio <= CPU_GOAL else 'NOT met'})"
        print(f"\n{head}\n{table}\n{verdict}", flush=True)
        results["decoder"] = {"rows": _rows_json(rows), "ratio": ratio, "mixer_ratio": mixer_ratio}
        sections.append(f"{head}.\n\n{table}\n\n{verdict}.")
        if args.profile and not cuda:
            steps = {
                "attention": DecoderStep(replace(cfg, mamba_blocks=0), device, window),
                "Mamba-MHSA": DecoderStep(replace(cfg, mamba_blocks=cfg.mamba_blocks or 2), device, window),
            }
            profile_table = cpu_op_profile(steps)
            print(f"\nself CPU time by operator, one step\n{profile_table}", flush=True)
            sections.append(f"Self CPU time by operator, one step (torch.profiler):\n\n{profile_table}")

    if args.part in ("model", "all"):
        cases = [ModelCase(b, layout) for layout in layouts for b in batches]  # the chosen layout's cases first

        def save(rows: list[Row]) -> None:
            results["model"] = {"rows": _rows_json(rows)}
            if args.json:
                args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")

        flops_per_window = rate = None
        if not args.no_flops:
            count = step_flops(cfg, 1, window, crop)
            flops_per_window = count.total
            dtype = training_dtype(device)
            size = 256 if args.quick else 8192 if cuda else 1024
            rate = matmul_rate(device, dtype, size)
            results["flops"] = {"per_window": flops_per_window, "forward": count.total_forward, "backward": count.total_backward,
                                "rate": rate, "rate_dtype": str(dtype), "rate_size": size, "by_part": by_part(count)}  # fmt: skip
        if args.json:  # the figures so far are kept even if (b) is stopped
            args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")
        rows = model_part(cfg, device, cases, window, crop, repeats_b, warmup, args.compile, 5 if args.profile else 0, log, save)
        table = format_model_table(rows, flops_per_window, rate, absolute)
        amp = "bf16 autocast + TF32" if cuda else "float32"
        head = (
            f"(b) whole model (I3D + decoder, N_m = {cfg.mamba_blocks}), window {window} frames, full training step, {amp}; "
            f"median of {repeats_b}"
        )
        lines = [head, table]
        if flops_per_window:
            floor_ms = 1e3 * flops_per_window / rate
            lines.append(
                f"{flops_per_window / 1e9:.1f} GFLOP a window (matrix products and convolutions, forward + backward; "
                f"crop {crop}); measured {str(training_dtype(device)).removeprefix('torch.')} matrix-product rate "
                f"{format_rate(rate)}: floor {floor_ms:.2f} ms a window. FLOPs by part of the model:"
            )
            lines.append(format_flops_table(count))
        print("\n" + "\n".join(lines), flush=True)
        for r in rows:
            if "profile" in r.extra:
                print(f"\n{r.name}: {format_profile(r.extra['profile'])}", flush=True)
        results["model"] = {"rows": _rows_json(rows)}
        sections.append("\n\n".join(lines[:1]) + ".\n\n" + "\n\n".join(lines[1:]))

    if args.part in ("features", "extract", "all"):
        log("(c) timing the extraction")
        extract = extraction_rate(device, window, crop, args.extract_batch, args.extract_windows or (3 if args.quick else 8), args.weights)
        extraction = (
            f"extraction (frozen I3D, {extract['window']}-frame windows every {extract['window'] // 2} at {extract['crop']} px, batch "
            f"{extract['batch']}, {'bf16' if cuda else 'float32'} on {device.type}): {extract['windows_per_s']:.3f} windows/s, "
            f"{extract['video_s_per_s']:.2f} s of 10 fps video a second"
        )
        results["features"] = {"extract": extract}
        if args.part == "extract":
            print(f"\n{extraction}", flush=True)
            sections.append(f"(c) {extraction}.")
        else:
            rows = features_part(cfg, device, window, crop, repeats_b, warmup, log)
            speedup = rows[0].median / rows[1].median
            table = format_features_table(rows, absolute)
            amp = "bf16 autocast + TF32" if cuda else "float32"
            head = (
                f"(c) features once against end to end: full training step, batch 1, window {window} frames, {amp}, the decoder "
                f"with N_m = {cfg.mamba_blocks}; features mode on {I3D_FEATURES}-channel I3D features; median of {repeats_b}, interleaved"
            )
            verdict = f"features-mode step {speedup:.1f}x faster than the end-to-end step"
            print(f"\n{head}\n{table}\n{verdict}\n{extraction}", flush=True)
            results["features"].update(rows=_rows_json(rows), speedup=speedup)
            sections.append(f"{head}.\n\n{table}\n\n{verdict}; {extraction}.")

    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str) + "\n")
    if args.readme:
        command = "python benchmarks/train_step.py" + (f" --threads {args.threads}" if args.threads else "")
        text = "\n\n".join(
            [f"`{command}` on {machine}. CPU figures are ratios measured side by side in one run." if not cuda else f"`{command}` on {machine}."]
            + sections + ([args.note] if args.note else [])
        )
        write_section(args.readme, SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
