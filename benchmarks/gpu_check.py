"""The GPU check: CUDA tests, the training-step benchmark and a short training run of the paper's
configuration, with one table printed last.

    bash benchmarks/gpu_check.sh                       # on a CUDA machine: carried wheels, then this script
    python benchmarks/gpu_check.py --out runs/gpu_check
    python benchmarks/gpu_check.py --cpu --tiny --skip-tests   # every stage at toy sizes on the CPU (the tests)

Stages, each in its own process with its own time limit (a failure or a hang stops only that stage):

1. ``tests``: ``pytest -m cuda`` on the test modules that hold CUDA tests (the comparison with mamba_ssm's
   fused kernels among them, where mamba_ssm imports), then the unit tests of what a GPU step runs (scan,
   Mamba, Mamba-MHSA, decoder, detector, losses, matching, engine), "not slow".
2. ``step``: ``benchmarks/train_step.py --profile``: the decoder pair, and full training steps of the whole
   model at 128 x 224 x 224 with batch 1 and 4 (channels_last_3d, cudnn.benchmark, bf16 autocast, TF32),
   the FLOP count and the measured bf16 matrix-product rate; the profile of each case; the features-mode
   step against the end-to-end one and the speed of ``mgtutor extract-features``' I3D pass.
3. ``train``: ``configs/smg_paper.yaml`` unchanged but for the data (a synthetic set of 24 sequences x 60 s,
   256 px at 10 fps, with its frame cache) and ``train.max_steps``: the paper's model, batch 1, I3D from
   the carried Kinetics weights when present, clips handed to the GPU as uint8 (the trainer's data path).
   Asserts that the loss falls (mean of the last 50 steps below 0.9 x the first 50); reports windows/s
   after the first 20 steps, the share of the training loop spent waiting for the DataLoader, peak memory.
4. ``data``: ``benchmarks/data_speed.py`` on the training stage's set and cache: the loader's windows/s with
   float32 clips made in the workers against uint8 crops made float on the GPU, with 0, 2 and up to 8
   workers, the GPU's share of the uint8 path and the host-to-device bytes a window.
5. ``compile`` (only while time is left): the whole-model step at batch 4 under ``torch.compile``.

Each stage writes its log (and JSON) into ``--out``; ``summary.md`` holds the final table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
PAPER_CONFIG = REPO / "configs" / "smg_paper.yaml"
# I3D weights, first found wins: the float16 copy that travels to a GPU machine, then the float32 original
WEIGHTS = (REPO / "weights" / "fp16" / "i3d_kinetics400_rgb.safetensors", REPO / "weights" / "i3d_kinetics400_rgb.safetensors")
UNIT_TESTS = ("test_ssm_scan.py", "test_mamba.py", "test_mamba_mhsa.py", "test_decoder.py", "test_detector.py",
              "test_losses.py", "test_matching.py", "test_engine.py")  # fmt: skip
GOAL_WINDOWS_S = 25.0
GOAL_PEAK_GB = 40.0
LOSS_DROP = 0.9  # the last 50 steps' mean loss must be below this fraction of the first 50's


def weights_path() -> Path | None:
    return next((path for path in WEIGHTS if path.is_file()), None)


# -- stage 3: training on a synthetic set, run in its own process (--stage train) --------------------------


class WaitMeter:
    """Wraps the trainer's DataLoader and adds up the time spent waiting for each batch."""

    def __init__(self, loader):
        self.loader = loader
        self.wait = 0.0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        batches = iter(self.loader)
        while True:
            start = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                return
            self.wait += time.perf_counter() - start
            yield batch


def _prepare(args: tuple) -> None:
    from mgtutor.data.cache import prepare_cache

    root, cache, fps, short_side, subjects = args
    prepare_cache(root, cache, fps=fps, short_side=short_side, subjects=subjects, progress=False)


def training_overrides(work: Path, tiny: bool, steps: int, workers: int, weights: Path | None) -> list[str]:
    """``--set`` overrides of the paper's configuration: the synthetic data, the step limit, no evaluation."""
    sequences = 2 if tiny else 24
    overrides = [
        "data.root=null", f"data.synthetic_dir={work / 'synthetic'}", f"data.synthetic_sequences={sequences}",
        f"data.synthetic_seconds={30 if tiny else 60}", "data.synthetic_fps=10", f"data.cache={work / 'cache'}",
        f"data.train_subjects={list(range(1, sequences + 1))}", "data.test_subjects=[]", f"data.num_workers={workers}",
        f"train.out={work / 'run'}", f"train.max_steps={steps}", "train.eval_every=0",
        f"model.encoder_weights={weights if weights else 'null'}",
    ]  # fmt: skip
    if tiny:  # toy sizes: the small CPU encoder, a narrow decoder, short windows, a larger step size
        overrides += [
            "data.synthetic_size=48", "data.short_side=48", "data.crop=32", "data.window=32", "model.encoder=small",
            "model.hidden=32", "model.queries=8", "model.points=9", "model.layers=2", "model.heads=4", "model.ffn=64",
            "model.mix_dim=8", "model.mamba_backend=torch", "train.lr=2e-3", "model.encoder_lr_scale=1.0",
        ]  # fmt: skip
    else:
        overrides += ["data.synthetic_size=256"]
    return overrides


def run_training(work: Path, tiny: bool, steps: int, device: str) -> dict:
    """Stage 3 in this process: build the synthetic set and cache, train, return the figures."""
    import torch

    from mgtutor.config import load_config
    from mgtutor.data.synthetic import ensure_synthetic, write_synthetic
    from mgtutor.train.distributed import DistributedContext
    from mgtutor.train.engine import build_trainer

    cores = os.cpu_count() or 1
    workers = 0 if tiny else max(1, min(8, cores - 2))
    weights = None if tiny else weights_path()
    config = load_config(PAPER_CONFIG, training_overrides(work, tiny, steps, workers, weights))
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    data = config.data
    start = time.perf_counter()
    if not (work / "synthetic" / "synthetic.json").exists():
        write_synthetic(
            data.synthetic_dir, sequences=data.synthetic_sequences, seconds=data.synthetic_seconds, size=data.synthetic_size,
            fps=data.synthetic_fps, seed=data.synthetic_seed, difficulty=data.synthetic_difficulty, workers=min(cores, 12),
        )  # fmt: skip
    root = ensure_synthetic(data)
    cache = Path(data.cache)
    if not cache.exists():  # decode in parallel, one part folder per process, then gather into one cache
        parts = [(root, cache.with_name(f"cache_part{i}"), data.fps, data.short_side, data.train_subjects[i :: min(cores, 8)])
                 for i in range(min(cores, 8, len(data.train_subjects)))]  # fmt: skip
        with ProcessPoolExecutor(len(parts)) as pool:
            list(pool.map(_prepare, parts))
        cache.mkdir()
        for part in parts:
            for path in part[1].iterdir():
                path.replace(cache / path.name)  # cache.json is the same in every part
            part[1].rmdir()
    data_s = time.perf_counter() - start

    stamps: list[float] = []
    totals: list[float] = []

    def on_step(step: int, losses: dict[str, float]) -> None:
        stamps.append(time.perf_counter())
        totals.append(losses["total"])

    context = DistributedContext(device=torch.device(device))
    trainer = build_trainer(config, context=context, progress=False, on_step=on_step)
    trainer.loader = meter = WaitMeter(trainer.loader)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    trainer.fit()
    fit_s = time.perf_counter() - start
    loop_s = stamps[-1] - start  # to the last step: the checkpoint written after it is left out
    skip = min(20, len(stamps) // 4)
    steady = (len(stamps) - 1 - skip) / (stamps[-1] - stamps[skip]) if len(stamps) > skip + 1 else float("nan")
    window = min(50, len(totals) // 2)
    first, last = sum(totals[:window]) / window, sum(totals[-window:]) / window
    return {
        "steps": len(totals), "batch": config.train.batch_size, "windows": len(trainer.loader.loader.dataset),
        "workers": workers, "weights": str(weights) if weights else None, "data_s": data_s, "fit_s": fit_s,
        "windows_per_s": steady * config.train.batch_size, "data_wait_share": meter.wait / loop_s,
        "loss_first": first, "loss_last": last, "loss_ratio": last / first, "loss_falls": last < LOSS_DROP * first,
        "peak_bytes": torch.cuda.max_memory_allocated() if device == "cuda" else None,
        "mamba_backend": config.model.mamba_backend, "sizes": "toy" if tiny else "paper", "losses": totals,
    }  # fmt: skip


# -- the driver ------------------------------------------------------------------------------------------------


def run_stage(name: str, command: list[str], out: Path, timeout: float, tail: int = 30) -> dict:
    """Run one stage's command in its own process group with a time limit (the whole group is killed at
    the limit, DataLoader workers included); its output goes to ``out/<name>.log`` and its last ``tail``
    lines are echoed."""
    log = out / f"{name}.log"
    print(f"\n=== {name}: {' '.join(command)} (limit {timeout:.0f} s)", flush=True)
    start = time.perf_counter()
    with open(log, "w") as handle:
        process = subprocess.Popen(command, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            status = process.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            status = "timeout"
    lines = log.read_text(errors="replace").splitlines()
    print("\n".join(lines[-tail:]), flush=True)
    return {"status": status, "seconds": time.perf_counter() - start, "log": str(log)}


def pytest_counts(log: str) -> str:
    """"12 passed, 1 skipped" from the last summary line of a pytest log."""
    lines = Path(log).read_text().splitlines()
    for line in reversed(lines):
        if re.search(r"\d+ (passed|failed|skipped|error|deselected)", line):
            return line.strip("= ").strip()
    return "no summary"


def data_command(python: str, out: Path, work: Path, tiny: bool) -> list[str]:
    """Stage 4's command: data_speed.py on the training stage's synthetic set and frame cache when they
    exist (its own tiny set with ``tiny``)."""
    command = [python, str(BENCHMARKS / "data_speed.py"), "--json", str(out / "data.json")]
    if tiny:
        return command + ["--quick"]
    root, cache = work / "synthetic", work / "cache"
    if (root / "synthetic.json").exists() and cache.is_dir():
        command += ["--root", str(root), "--cache", str(cache)]
    workers = max(2, min(8, (os.cpu_count() or 1) - 2))
    return command + ["--workers", "0", "2", *([str(workers)] if workers > 2 else []), "--windows", "40"]


def cuda_test_modules() -> list[str]:
    """Test modules that hold a ``@pytest.mark.cuda`` test."""
    return sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py") if "mark.cuda" in p.read_text())


def environment(device: str) -> dict:
    import torch

    info = {"torch": torch.__version__, "python": sys.version.split()[0], "device": device}
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, memory_gb=props.total_memory / 1e9, cuda=torch.version.cuda)
    if importlib.util.find_spec("mamba_ssm") is None:
        info["mamba_ssm"] = "absent (Mamba runs on mgtutor's PyTorch scan)"
    else:
        from mgtutor.ssm.mamba import _fused_available

        info["mamba_ssm"] = "imports with its compiled kernels" if _fused_available() else "imports, but its compiled kernels do not (Mamba runs on mgtutor's PyTorch scan)"
    weights = weights_path()
    info["i3d_weights"] = str(weights.relative_to(REPO)) if weights else "absent: I3D starts from random weights (speed is the same)"
    return info


def _gb(value) -> str:
    return "-" if value is None else f"{value / 1e9:.1f} GB"


def summary_table(info: dict, stages: dict, step: dict | None, training: dict | None, data: dict | None = None) -> str:
    """The final table (Markdown)."""
    rows = [("machine", f"{info.get('gpu', 'CPU')}, torch {info['torch']}, CUDA {info.get('cuda', '-')}, {time.strftime('%Y-%m-%d')}")]
    rows.append(("mamba_ssm", info["mamba_ssm"]))
    rows.append(("I3D weights", info["i3d_weights"]))
    for name in ("cuda tests", "unit tests"):
        if name in stages:
            stage = stages[name]
            rows.append((name, f"{stage['status']}: {stage.get('counts', '')} ({stage['seconds']:.0f} s)"))
    if step:
        decoder = step.get("decoder")
        if decoder:
            rows.append(("decoder step, Mamba-MHSA / attention", f"{decoder['ratio']:.2f}x (query mixer alone {decoder['mixer_ratio']:.2f}x)"))
        flops = step.get("flops") or {}
        for row in step.get("model", {}).get("rows", []):
            of_floor = ""
            if flops:
                of_floor = f", {100 * flops['per_window'] * row['windows_per_s'] / flops['rate']:.1f}% of the floor"
            profile = row.get("profile")
            idle = f", GPU idle {100 * profile['idle']:.0f}%" if profile else ""
            verdict = ""
            if info["device"] == "cuda":  # the goal is a GPU's: >= 25 windows/s under 40 GB
                met = row["windows_per_s"] >= GOAL_WINDOWS_S and (row["peak_bytes"] or 0) < GOAL_PEAK_GB * 1e9
                verdict = f"; goal {'met' if met else 'NOT met'}"
            rows.append((
                f"whole model, {row['name']}, {row['crop']} px",
                f"{row['windows_per_s']:.1f} windows/s, peak {_gb(row['peak_bytes'])}{of_floor}, loss {100 * row['loss_share']:.1f}% "
                f"(matching {100 * row['matching_share']:.1f}%){idle}{verdict}",
            ))  # fmt: skip
        if flops:
            rate = f"{flops['rate'] / 1e12:.0f} TFLOP/s" if flops["rate"] >= 1e12 else f"{flops['rate'] / 1e9:.0f} GFLOP/s"
            floor_ms = 1e3 * flops["per_window"] / flops["rate"]
            rows.append(("FLOPs a window, matrix-product rate", f"{flops['per_window'] / 1e9:.0f} GFLOP, {rate} ({flops['rate_dtype']}): floor {floor_ms:.2f} ms a window"))
    features = (step or {}).get("features")
    if features:
        extract = features["extract"]
        speedup = f"{features['speedup']:.1f}x faster than the end-to-end step; " if "speedup" in features else ""
        rows.append((
            "features-mode step (decoder on I3D features)",
            f"{speedup}extraction {extract['windows_per_s']:.1f} windows/s ({extract['video_s_per_s']:.0f} s of 10 fps video "
            f"a second, {extract['crop']} px)",
        ))  # fmt: skip
    if "step" in stages and not step:
        rows.append(("step benchmark", f"{stages['step']['status']} (see step.log)"))
    if training:
        rows.append((
            f"training, {training['sizes']} sizes, {training['steps']} steps",
            f"{training['windows_per_s']:.1f} windows/s, waiting for data {100 * training['data_wait_share']:.0f}%, "
            f"peak {_gb(training['peak_bytes'])}, loss {training['loss_first']:.3f} -> {training['loss_last']:.3f} "
            f"({'falls' if training['loss_falls'] else 'does NOT fall'})",
        ))  # fmt: skip
    elif "train" in stages:
        rows.append(("training", f"{stages['train']['status']} (see train.log)"))
    if data:
        rates = {(r["path"], r["workers"]): r["windows_per_s"] for r in data["rows"]}
        per_workers = ", ".join(
            f"{w} workers {rates[('uint8 to the device', w)]:.1f} / {rates[('float32 in the workers', w)]:.1f}"
            for w in sorted({w for _, w in rates}) if ("float32 in the workers", w) in rates
        )  # fmt: skip
        sizes = data["bytes"]
        rows.append((
            "data loading, windows/s: uint8 to the device / float32 in the workers",
            f"{per_workers}; the device's share {data['device_windows_per_s']:.0f} windows/s on {data['device']}; "
            f"host-to-device {sizes['float32 in the workers'] / sizes['uint8 to the device']:.1f}x fewer bytes",
        ))  # fmt: skip
    elif "data" in stages:
        rows.append(("data loading", f"{stages['data']['status']} (see data.log)"))
    if "compile" in stages:
        rows.append(("torch.compile", f"{stages['compile']['status']}: {stages['compile'].get('result', 'see compile.log')}"))
    rows.append(("stage times", ", ".join(f"{name} {stage['seconds']:.0f} s" for name, stage in stages.items())))
    return "\n".join(["| check | result |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "gpu_check", help="folder for logs, JSON and summary.md")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (with --tiny: a test of this script)")
    parser.add_argument("--tiny", action="store_true", help="toy sizes everywhere")
    parser.add_argument("--steps", type=int, help="optimiser steps of the training stage (default 300; 60 with --tiny)")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds for all stages (default 480); compile runs only if time is left")
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--skip-step", action="store_true")
    parser.add_argument("--skip-train", action="store_true")
    parser.add_argument("--skip-data", action="store_true")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--stage", choices=("train",), help=argparse.SUPPRESS)  # internal: run one stage in this process
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    device = "cpu" if args.cpu else "cuda"
    steps = args.steps or (60 if args.tiny else 300)

    if args.stage == "train":
        if args.cpu:  # a 2-thread pool on a busy CPU stalls on every small operation; workers use 1 thread too
            import torch

            torch.set_num_threads(1)
        result = run_training(args.work, args.tiny, steps, device)
        (args.out / "train.json").write_text(json.dumps(result, indent=1) + "\n")
        print(f"loss {result['loss_first']:.4f} -> {result['loss_last']:.4f}, {result['windows_per_s']:.2f} windows/s")
        return 0 if result["loss_falls"] else 1

    import torch

    if device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device is visible: run with --cpu --tiny for a CPU rehearsal", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    remaining = lambda: args.budget - (time.perf_counter() - start)  # noqa: E731
    python = sys.executable
    info = environment(device)
    print(json.dumps(info, indent=1), flush=True)
    stages: dict[str, dict] = {}
    step = training = None

    if not args.skip_tests:
        modules = cuda_test_modules()
        if modules:
            stages["cuda tests"] = run_stage("cuda_tests", [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", *modules], args.out, min(150, remaining()))
            stages["cuda tests"]["counts"] = pytest_counts(stages["cuda tests"]["log"])
        units = [f"tests/{name}" for name in UNIT_TESTS if (REPO / "tests" / name).exists()]
        stages["unit tests"] = run_stage("unit_tests", [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", *units], args.out, min(120, remaining()))
        stages["unit tests"]["counts"] = pytest_counts(stages["unit tests"]["log"])

    if not args.skip_step:
        command = [python, str(BENCHMARKS / "train_step.py"), "--device", device, "--json", str(args.out / "step.json"), "--profile", "--layout", "both"]
        if args.tiny:
            command.append("--quick")
        if args.cpu:
            command += ["--threads", "1"]
        weights = weights_path()
        if weights and not args.tiny:
            command += ["--weights", str(weights)]
        stages["step"] = run_stage("step", command, args.out, min(240, remaining()))
        if (args.out / "step.json").exists():  # also the cases finished before a time limit
            step = json.loads((args.out / "step.json").read_text())

    if not args.skip_train:
        command = [python, str(Path(__file__).resolve()), "--stage", "train", "--out", str(args.out), "--work", str(args.out / "train_work"), "--steps", str(steps)]
        command += ["--cpu"] if args.cpu else []
        command += ["--tiny"] if args.tiny else []
        stages["train"] = run_stage("train", command, args.out, min(240, remaining()))
        if (args.out / "train.json").exists():
            training = json.loads((args.out / "train.json").read_text())

    data = None
    if not args.skip_data:
        stages["data"] = run_stage("data", data_command(python, args.out, args.out / "train_work", args.tiny), args.out, min(150, remaining()))
        if (args.out / "data.json").exists():
            data = json.loads((args.out / "data.json").read_text())

    if not args.no_compile and not args.tiny and remaining() > 90:
        command = [python, str(BENCHMARKS / "train_step.py"), "--device", device, "--part", "model", "--batch", "4",
                   "--compile", "--no-flops", "--repeats", "5", "--json", str(args.out / "compile.json")]  # fmt: skip
        stages["compile"] = run_stage("compile", command, args.out, remaining() - 15)
        if (args.out / "compile.json").exists():
            row = json.loads((args.out / "compile.json").read_text())["model"]["rows"][0]
            stages["compile"]["result"] = f"{row['windows_per_s']:.1f} windows/s at batch 4, {row.get('compile', '')}"

    table = summary_table(info, stages, step, training, data)
    (args.out / "summary.md").write_text(table + "\n")
    print("\n" + table, flush=True)
    failed = [name for name, stage in stages.items() if stage["status"] != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
