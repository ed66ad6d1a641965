"""Data-loading speed: training windows a second from the frame cache, per number of DataLoader workers,
set against the training step's rate.

    python benchmarks/data_speed.py                       # synthetic set in a temporary folder, workers 0 1 2
    python benchmarks/data_speed.py --quick               # tiny set and windows, seconds (what the tests run)
    python benchmarks/data_speed.py --step-rate 25        # compare with 25 windows/s (the GPU goal)
    python benchmarks/data_speed.py --step-json step.json # compare with what benchmarks/train_step.py measured
    python benchmarks/data_speed.py --root /path/to/SMG --cache data/smg_cache   # a real root and its cache

What is timed is the training dataset's path (``mgtutor.data.dataset.WindowDataset``, split "train"):
read the window's frames from the memory-mapped cache that ``mgtutor prepare`` writes, random crop,
uint8 -> float32 in [-1, 1], photometric jitter, then ``collate`` (batch 1), through a ``DataLoader`` with
0, 1, 2, ... worker processes, windows drawn at random. The first window of each run (which starts the
workers) is timed apart. The loader keeps up when its rate is above the training step's; since workers
run in parallel, the workers needed are the step's rate over one worker's rate, rounded up, provided the
machine has that many free cores.

By default the frames are SMG-like: a synthetic set at 10 fps, 256 x 256 pixels (256 px short side), with
224 x 224 crops of 128-frame windows, the paper's configuration; one such window is 77 MB of float32.
"""

from __future__ import annotations

import argparse
import json
import math
import os
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
from mgtutor.data.dataset import WindowDataset, collate, frames_to_clip  # noqa: E402
from mgtutor.data.smg import load_root  # noqa: E402
from mgtutor.data.synthetic import write_synthetic  # noqa: E402

SECTION = "## Data loading"
GPU_GOAL = 25.0  # windows a second the training step should reach on one H100


def build_set(folder: Path, sequences: int, seconds: float, size: int, fps: float) -> tuple[Path, Path]:
    """A synthetic SMG-format root and its frame cache under ``folder``; returns (root, cache)."""
    root, cache = folder / "root", folder / "cache"
    write_synthetic(root, sequences=sequences, seconds=seconds, size=size, fps=fps, seed=0, workers=min(4, os.cpu_count() or 1))
    prepare_cache(root, cache, fps=fps, short_side=size, progress=False)
    return root, cache


def loader_rate(dataset: WindowDataset, workers: int, windows: int, seed: int = 0) -> tuple[float, float]:
    """(seconds to the first window, windows a second after it) of a DataLoader with ``workers``."""
    sampler = RandomSampler(dataset, replacement=True, num_samples=windows + 1, generator=torch.Generator().manual_seed(seed))
    loader = DataLoader(dataset, batch_size=1, sampler=sampler, num_workers=workers, collate_fn=collate)
    start = time.perf_counter()
    batches = iter(loader)
    next(batches)
    first = time.perf_counter() - start
    start = time.perf_counter()
    count = sum(1 for _ in batches)
    return first, count / (time.perf_counter() - start)


def stage_rates(dataset: WindowDataset, windows: int) -> dict[str, float]:
    """Windows a second of the path's stages in this process (no workers): reading the uint8 crop from the
    memory map, reading and converting it to float32, and the whole item (crop, convert, jitter)."""
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(dataset), windows)
    cfg, size = dataset.cfg, dataset.cfg.crop

    def crops():
        for index in picks:
            w = dataset.windows[index]
            seq = dataset.sequences[w.sequence]
            frames = open_cached(cfg.cache, seq, cfg.fps, cfg.short_side)
            yield np.array(frames[w.start : w.start + w.size, :size, :size]), w.size

    rates = {}
    for name, run in (
        ("read uint8 crop", lambda: [None for _ in crops()]),
        ("read + to float32", lambda: [frames_to_clip(frames, length) for frames, length in crops()]),
        ("whole item (+ random crop, jitter)", lambda: [dataset[int(i)] for i in picks]),
    ):
        start = time.perf_counter()
        run()
        rates[name] = windows / (time.perf_counter() - start)
    return rates


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


def format_table(rows: list[tuple[int, float, float]], step_rate: float | None) -> str:
    lines = ["| workers | first window s | windows/s | per worker | vs step rate |", "|---:|---:|---:|---:|---:|"]
    for workers, first, rate in rows:
        per = "-" if workers == 0 else f"{rate / workers:.2f}"
        versus = "-" if not step_rate else f"{rate / step_rate:.2f}x"
        lines.append(f"| {workers} | {first:.2f} | {rate:.2f} | {per} | {versus} |")
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
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader workers to try (default 0 1 2)")
    parser.add_argument("--windows", type=int, default=40, help="windows timed per run (default 40)")
    rate_group = parser.add_mutually_exclusive_group()
    rate_group.add_argument("--step-rate", type=float, help=f"training windows a second to compare with (default {GPU_GOAL:g}, the GPU goal)")
    rate_group.add_argument("--step-json", type=Path, help="take the rate from a benchmarks/train_step.py --json file")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the main process (default 1, as in a worker)")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    parser.add_argument("--readme", type=Path, help="write the table into this file's 'Data loading' section")
    parser.add_argument("--note", default="", help="a sentence to put under the table in the README")
    args = parser.parse_args(argv)

    if args.quick:
        args.sequences, args.seconds, args.size, args.window, args.crop, args.windows = 1, 30.0, 48, 64, 32, 4
        args.workers = [w for w in args.workers if w <= 1]
    torch.set_num_threads(args.threads)
    step_rate = step_rate_from_json(args.step_json) if args.step_json else (args.step_rate or GPU_GOAL)
    machine = machine_line("cpu")
    print(f"machine: {machine}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.root is None:
            print(f"writing a synthetic set: {args.sequences} x {args.seconds:g} s at {args.size} px, {args.fps:g} fps", file=sys.stderr, flush=True)
            root, cache = build_set(Path(tmp), args.sequences, args.seconds, args.size, args.fps)
        else:
            root, cache = args.root, args.cache or Path(tmp) / "cache"
            prepare_cache(root, cache, fps=args.fps, short_side=args.size, progress=True)
        data_cfg = DataConfig(root=str(root), cache=str(cache), fps=args.fps, window=args.window, short_side=args.size, crop=args.crop)
        dataset = WindowDataset(load_root(root), data_cfg, "train")
        if len(dataset) == 0:
            raise SystemExit(f"no training windows of {args.window} frames hold a whole gesture: use longer or more sequences")
        stages = stage_rates(dataset, args.windows)
        rows = []
        for workers in args.workers:
            print(f"{workers} worker(s): {args.windows} windows", file=sys.stderr, flush=True)
            rows.append((workers, *loader_rate(dataset, workers, args.windows)))

    window_mb = 3 * args.window * args.crop**2 * 4 / 1e6
    head = (
        f"training windows of {args.window} frames, {args.crop}x{args.crop} crops from {args.size} px frames "
        f"({window_mb:.0f} MB of float32 each), {len(dataset)} windows in the set, batch 1, drawn at random"
    )
    table = format_table(rows, step_rate)
    stage_line = "in one process: " + ", ".join(f"{name} {rate:.1f} windows/s" for name, rate in stages.items())
    one = next((rate for workers, _, rate in rows if workers == 1), None) or max(rate for _, _, rate in rows)
    need = workers_needed(step_rate, one)
    source = f"train_step.py's best measured rate {step_rate:.2f}" if args.step_json else f"{step_rate:g}"
    verdict = (
        f"at {source} training windows/s the loader must deliver {step_rate * window_mb / 1e3:.1f} GB/s of clips: "
        f"{need} worker(s) at the measured {one:.2f} windows/s per worker (this machine has {os.cpu_count()} cores)"
    )
    print(f"\n{head}\n{table}\n{stage_line}\n{verdict}", flush=True)
    if args.json:
        results = {"machine": machine, "rows": [dict(zip(("workers", "first_s", "windows_per_s"), r)) for r in rows],
                   "stages": stages, "step_rate": step_rate, "workers_needed": need, "window_mb": window_mb}  # fmt: skip
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.readme:
        text = "\n\n".join(
            part for part in (
                f"`python benchmarks/data_speed.py` on {machine}.", head + ".", table, stage_line + ".", verdict + ".", args.note,
            ) if part
        )  # fmt: skip
        write_section(args.readme, SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
