"""Data-loading speed: training windows a second from the frame cache, the path that makes float32 clips
in the loader's workers against the path that hands uint8 crops to the training device, side by side.

    python benchmarks/data_speed.py                       # synthetic set in a temporary folder, workers 0 1 2
    python benchmarks/data_speed.py --quick               # tiny set and windows, seconds (what the tests run)
    python benchmarks/data_speed.py --augment pointtad    # PointTAD's augmentation instead of mgtutor's jitter
    python benchmarks/data_speed.py --step-rate 25        # compare with 25 windows/s (the GPU goal)
    python benchmarks/data_speed.py --step-json step.json # compare with what benchmarks/train_step.py measured
    python benchmarks/data_speed.py --root /path/to/SMG --cache data/smg_cache   # a real root and its cache
    python benchmarks/data_speed.py --readme benchmarks/README.md --note "..."   # write the 'Data loading' section

What is timed is the training dataset (``mgtutor.data.dataset.WindowDataset``, split "train"): read the
window's frames from the memory-mapped cache that ``mgtutor prepare`` writes, random crop, then

- "float32 in the workers": uint8 -> float32 in [-1, 1] and the augmentation in the worker, a float32 clip
  (3 x T x H x W x 4 bytes) handed to the training process (``WindowDataset(..., uint8=False)``, the path
  training took before the device path existed, and what notebooks still read);
- "uint8 to the device": the uint8 crop and a few augmentation parameters handed over
  (``uint8=True``, what ``mgtutor train`` uses); the conversion and augmentation then run on the training
  device (:func:`mgtutor.data.dataset.model_inputs`), timed separately on ``--device``,

then ``collate`` (batch 1), through a ``DataLoader`` with 0, 1, 2, ... worker processes (pinned memory
when CUDA is present), windows drawn at random, the two paths alternating for each worker count. The first
window of each run (which starts the workers) is timed apart. The loader keeps up when its rate is above
the training step's; since workers run in parallel, the workers needed are the step's rate over one
worker's rate, rounded up, provided the machine has that many free cores. On a machine without a GPU the
device's work falls to the training process's CPU; on a GPU it is a few batched kernels.

By default the frames are SMG-like: a synthetic set at 10 fps, 256 x 256 pixels (256 px short side), with
224 x 224 crops of 128-frame windows, the paper's configuration; one such window is 77 MB of float32 and
19 MB of uint8.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, RandomSampler

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine_line, write_section  # noqa: E402

from mgtutor.config import DataConfig  # noqa: E402
from mgtutor.data.cache import open_cached, prepare_cache  # noqa: E402
from mgtutor.data.dataset import WindowDataset, collate, frames_to_clip, model_inputs  # noqa: E402
from mgtutor.data.smg import load_root  # noqa: E402
from mgtutor.data.synthetic import write_synthetic  # noqa: E402

SECTION = "## Data loading"
GPU_GOAL = 25.0  # windows a second the training step should reach on one H100
PATHS = {"float32 in the workers": False, "uint8 to the device": True}  # name -> WindowDataset's uint8


def build_set(folder: Path, sequences: int, seconds: float, size: int, fps: float) -> tuple[Path, Path]:
    """A synthetic SMG-format root and its frame cache under ``folder``; returns (root, cache)."""
    root, cache = folder / "root", folder / "cache"
    write_synthetic(root, sequences=sequences, seconds=seconds, size=size, fps=fps, seed=0, workers=min(4, os.cpu_count() or 1))
    prepare_cache(root, cache, fps=fps, short_side=size, progress=False)
    return root, cache


def loader_rate(dataset: WindowDataset, workers: int, windows: int, seed: int = 0) -> tuple[float, float]:
    """(seconds to the first window, windows a second after it) of a DataLoader with ``workers``, pinning
    the batches when CUDA is present (as the trainer does)."""
    sampler = RandomSampler(dataset, replacement=True, num_samples=windows + 1, generator=torch.Generator().manual_seed(seed))
    loader = DataLoader(dataset, batch_size=1, sampler=sampler, num_workers=workers, collate_fn=collate, pin_memory=torch.cuda.is_available())
    start = time.perf_counter()
    batches = iter(loader)
    next(batches)
    first = time.perf_counter() - start
    start = time.perf_counter()
    count = sum(1 for _ in batches)
    return first, count / (time.perf_counter() - start)


def stage_rates(datasets: dict[str, WindowDataset], windows: int) -> dict[str, float]:
    """Windows a second of the stages in this process (no workers): reading the uint8 crop from the memory
    map, reading and converting it to float32, and each path's whole item."""
    dataset = next(iter(datasets.values()))
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(dataset), windows)
    cfg, size = dataset.cfg, dataset.cfg.crop

    def crops():
        for index in picks:
            w = dataset.windows[index]
            seq = dataset.sequences[w.sequence]
            frames = open_cached(cfg.cache, seq, cfg.fps, cfg.short_side)
            yield np.array(frames[w.start : w.start + w.size, :size, :size]), w.size

    runs = {
        "read uint8 crop": lambda: [None for _ in crops()],
        "read + to float32": lambda: [frames_to_clip(frames, length) for frames, length in crops()],
    }
    for name, path in datasets.items():
        runs[f"whole item, {name}"] = lambda path=path: [path[int(i)] for i in picks]
    rates = {}
    for name, run in runs.items():
        start = time.perf_counter()
        run()
        rates[name] = windows / (time.perf_counter() - start)
    return rates


def device_rate(dataset: WindowDataset, device: torch.device, windows: int, batch: int = 1) -> float:
    """Windows a second of the device's share of the uint8 path: the host-to-device copy of a pinned
    uint8 batch, conversion to float32 and augmentation (``model_inputs``), median over ``windows``."""
    items = [dataset[i % len(dataset)] for i in range(batch)]
    batch_dict = collate(items)
    if device.type == "cuda":
        batch_dict["clip"] = batch_dict["clip"].pin_memory()
    times = []
    for _ in range(max(windows // batch, 3) + 1):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        model_inputs(batch_dict, device, dataset.cfg.augment)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times[1:])  # the first call warms the kernels up


def transfer_bytes(datasets: dict[str, WindowDataset]) -> dict[str, int]:
    """Bytes a window sends from the loader to the training device, by path (clip and parameters)."""
    sizes = {}
    for name, dataset in datasets.items():
        item = dataset[0]
        sizes[name] = item["clip"].nbytes + (item["augment"].nbytes if "augment" in item else 0)
    return sizes


def workers_needed(step_rate: float, per_worker: float) -> int:
    """Workers so that the loader's rate is at least the step's (workers run in parallel)."""
    return max(1, math.ceil(step_rate / per_worker))


def step_rate_from_json(path: Path) -> float:
    """The best windows/s of (b) in a ``benchmarks/train_step.py --json`` file."""
    results = json.loads(Path(path).read_text())
    rows = results.get("model", {}).get("rows", [])
    if not rows:
        raise SystemExit(f"{path} holds no whole-model measurement (run train_step.py with --part model or all)")
    return max(row["windows_per_s"] for row in rows)


def format_table(rows: list[dict], step_rate: float | None) -> str:
    """One line per (path, workers): first window, windows/s, per worker, against the step's rate, and the
    uint8 path's speed-up over the float32 path with as many workers."""
    lines = ["| path | workers | first window s | windows/s | per worker | vs step rate | vs float32 path |", "|---|---:|---:|---:|---:|---:|---:|"]
    base = {r["workers"]: r["windows_per_s"] for r in rows if not PATHS[r["path"]]}
    for r in rows:
        per = "-" if r["workers"] == 0 else f"{r['windows_per_s'] / r['workers']:.2f}"
        versus = "-" if not step_rate else f"{r['windows_per_s'] / step_rate:.2f}x"
        gain = f"{r['windows_per_s'] / base[r['workers']]:.1f}x" if PATHS[r["path"]] and r["workers"] in base else "-"
        lines.append(f"| {r['path']} | {r['workers']} | {r['first_s']:.2f} | {r['windows_per_s']:.2f} | {per} | {versus} | {gain} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny set and few windows: a smoke test")
    parser.add_argument("--root", type=Path, help="an SMG-format root (default: a synthetic set in a temporary folder)")
    parser.add_argument("--cache", type=Path, help="its frame cache from `mgtutor prepare` (made when missing)")
    parser.add_argument("--sequences", type=int, default=4, help="synthetic sequences (default 4)")
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds a synthetic sequence (default 60)")
    parser.add_argument("--size", type=int, default=256, help="synthetic frame size = cache short side (default 256)")
    parser.add_argument("--fps", type=float, default=10.0, help="target frame rate (default 10)")
    parser.add_argument("--window", type=int, default=128, help="frames a window (default 128)")
    parser.add_argument("--crop", type=int, default=224, help="crop size (default 224)")
    parser.add_argument("--augment", choices=("jitter", "pointtad"), default="jitter", help="data.augment (default jitter, the paper configuration's)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader workers to try (default 0 1 2)")
    parser.add_argument("--windows", type=int, default=40, help="windows timed per run (default 40)")
    parser.add_argument("--device", default=None, help="where the uint8 path's conversion is timed (default: cuda when present, else cpu)")
    rate_group = parser.add_mutually_exclusive_group()
    rate_group.add_argument("--step-rate", type=float, help=f"training windows a second to compare with (default {GPU_GOAL:g}, the GPU goal)")
    rate_group.add_argument("--step-json", type=Path, help="take the rate from a benchmarks/train_step.py --json file")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the main process (default 1, as in a worker)")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--readme", type=Path, help="write the tables into this file's 'Data loading' section")
    parser.add_argument("--note", default="", help="a sentence to put under the tables in the README")
    args = parser.parse_args(argv)

    if args.quick:
        args.sequences, args.seconds, args.size, args.window, args.crop, args.windows = 1, 30.0, 48, 64, 32, 4
        args.workers = [w for w in args.workers if w <= 1]
    torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    step_rate = step_rate_from_json(args.step_json) if args.step_json else (args.step_rate or GPU_GOAL)
    machine = machine_line(device)
    print(f"machine: {machine}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.root is None:
            print(f"writing a synthetic set: {args.sequences} x {args.seconds:g} s at {args.size} px, {args.fps:g} fps", file=sys.stderr, flush=True)
            root, cache = build_set(Path(tmp), args.sequences, args.seconds, args.size, args.fps)
        else:
            root, cache = args.root, args.cache or Path(tmp) / "cache"
            prepare_cache(root, cache, fps=args.fps, short_side=args.size, progress=True)
        data_cfg = DataConfig(root=str(root), cache=str(cache), fps=args.fps, window=args.window, short_side=args.size, crop=args.crop, augment=args.augment)
        sequences = load_root(root)
        datasets = {name: WindowDataset(sequences, data_cfg, "train", uint8=uint8) for name, uint8 in PATHS.items()}
        count = len(datasets["uint8 to the device"])
        if count == 0:
            raise SystemExit(f"no training windows of {args.window} frames hold a whole gesture: use longer or more sequences")
        stages = stage_rates(datasets, args.windows)
        rows = []
        for workers in args.workers:
            for name, dataset in datasets.items():  # the paths alternate, so load on the machine hits both alike
                print(f"{name}, {workers} worker(s): {args.windows} windows", file=sys.stderr, flush=True)
                first, rate = loader_rate(dataset, workers, args.windows)
                rows.append({"path": name, "workers": workers, "first_s": first, "windows_per_s": rate})
        on_device = device_rate(datasets["uint8 to the device"], device, args.windows)
        sizes = transfer_bytes(datasets)

    head = (
        f"training windows of {args.window} frames, {args.crop}x{args.crop} crops from {args.size} px frames, "
        f"augment: {args.augment}, {count} windows in the set, batch 1, drawn at random"
    )
    table = format_table(rows, step_rate)
    float_mb, uint8_mb = sizes["float32 in the workers"] / 1e6, sizes["uint8 to the device"] / 1e6
    transfer = (
        f"host-to-device a window: {float_mb:.1f} MB (float32 clip) against {uint8_mb:.1f} MB (uint8 crop and "
        f"parameters), {float_mb / uint8_mb:.2f}x less; the device's share of the uint8 path (copy, float32, "
        f"augmentation) ran at {on_device:.1f} windows/s on {device.type}"
    )
    stage_line = "in one process: " + ", ".join(f"{name} {rate:.1f} windows/s" for name, rate in stages.items())
    verdicts = []
    for name in PATHS:
        mine = [r for r in rows if r["path"] == name]
        one = next((r["windows_per_s"] for r in mine if r["workers"] == 1), None) or max(r["windows_per_s"] for r in mine)
        need = workers_needed(step_rate, one)
        verdicts.append((name, one, need))
    source = f"train_step.py's best measured rate {step_rate:.2f}" if args.step_json else f"{step_rate:g}"
    verdict = f"at {source} training windows/s: " + "; ".join(
        f"the {name} path needs {need} worker(s) at its {one:.2f} windows/s a worker" for name, one, need in verdicts
    ) + f" (this machine has {os.cpu_count()} cores)"
    two = next((r["windows_per_s"] for r in rows if r["path"] == "uint8 to the device" and r["workers"] == 2), None)
    goal = "" if two is None else (
        f"goal: the uint8 path with 2 workers delivers {two:.1f} windows/s (goal >= {GPU_GOAL:g}: {'met' if two >= GPU_GOAL else 'NOT met'}), "
        f"host-to-device bytes {float_mb / uint8_mb:.2f}x less (goal 4x: {'met' if float_mb / uint8_mb >= 3.99 else 'NOT met'})"
    )
    print(f"\n{head}\n{table}\n{transfer}\n{stage_line}\n{verdict}\n{goal}", flush=True)
    if args.json:
        results = {"machine": machine, "augment": args.augment, "rows": rows, "stages": stages, "step_rate": step_rate,
                   "workers_needed": {name: need for name, _, need in verdicts}, "bytes": sizes,
                   "device": device.type, "device_windows_per_s": on_device}  # fmt: skip
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.readme:
        text = "\n\n".join(
            part for part in (
                f"`python benchmarks/data_speed.py` on {machine}.", head + ".", table, transfer + ".", stage_line + ".",
                verdict + ".", goal + "." if goal else "", args.note,
            ) if part
        )  # fmt: skip
        write_section(args.readme, SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
