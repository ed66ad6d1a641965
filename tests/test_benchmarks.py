"""The benchmark scripts' CPU-runnable parts: FLOP counting by module, the step and data-loading
measurements at toy sizes, profile summaries, README sections, and the GPU check's driver in CPU mode."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import data_speed  # noqa: E402
import flops  # noqa: E402
import gpu_check  # noqa: E402
import report  # noqa: E402
import train_step  # noqa: E402

from mgtutor.config import ModelConfig, TrainConfig, load_config  # noqa: E402
from mgtutor.model.detector import Detector  # noqa: E402
from mgtutor.train.losses import SetCriterion  # noqa: E402

QUICK = ModelConfig(encoder="i3d", mamba_blocks=2, **train_step.QUICK)


def count(model: nn.Module, run) -> flops.FlopCount:
    with flops.ModuleFlops(model) as counter:
        run()
    return counter.count


# -- FLOP counting ---------------------------------------------------------------------------------------


def test_linear_layers_forward_and_backward_are_charged_to_each_layer():
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))
    x = torch.randn(5, 8)  # needs no gradient: the first layer's backward computes only its weight's
    counted = count(model, lambda: model(x).sum().backward())
    assert dict(counted.forward) == {"0": 2 * 5 * 8 * 16, "2": 2 * 5 * 16 * 4}
    assert dict(counted.backward) == {"0": 2 * 5 * 8 * 16, "2": 2 * (2 * 5 * 16 * 4)}
    with FlopCounterMode(display=False) as reference:
        model(x).sum().backward()
    assert counted.total == reference.get_total_flops()


def test_backward_is_charged_to_the_module_that_made_it_even_beside_a_module_without_tensor_inputs():
    class Table(nn.Module):  # like QueryPoints: forward(batch: int), no tensor input
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(3, 6))

        def forward(self, batch):
            return self.weight.expand(batch, -1, -1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Linear(4, 6)
            self.table = Table()
            self.head = nn.Linear(6, 2)

        def forward(self, x):
            features = self.encoder(x)  # (b, 6)
            return self.head(features[:, None, :] * self.table(x.shape[0]))

    net, x = Net(), torch.randn(2, 4)
    counted = count(net, lambda: net(x).sum().backward())
    assert counted.backward["encoder"] == counted.forward["encoder"] == 2 * 2 * 4 * 6  # weight gradient only
    assert counted.backward["head"] == 2 * counted.forward["head"]
    assert "table" not in counted.backward  # FlopCounterMode's tracker charges the encoder's backward here


def test_grouped_convolution_backward_costs_one_forward_per_gradient():
    conv = nn.Conv1d(16, 16, kernel_size=4, groups=16, padding=3)  # Mamba's depthwise conv1d
    x = torch.randn(2, 16, 20, requires_grad=True)
    counted = count(conv, lambda: conv(x).sum().backward())
    forward = 2 * 2 * 23 * 16 * 4  # output positions x channels x taps (one input channel per group)
    assert counted.forward[""] == forward
    assert counted.backward[""] == 2 * forward  # input and weight gradients


def test_meta_count_equals_the_count_of_a_real_run():
    meta = flops.step_flops(QUICK, batch=2, window=16, crop=32)
    torch.manual_seed(0)
    model = Detector(QUICK)
    x = torch.rand(2, 3, 16, 32, 32) * 2 - 1
    real = count(model, lambda: flops.surrogate_loss(model(x)).backward())
    assert dict(meta.forward) == dict(real.forward)
    assert dict(meta.backward) == dict(real.backward)


def test_first_convolution_matches_its_formula_and_parts_add_up():
    counted = flops.step_flops(QUICK, batch=1, window=16, crop=32)
    # Conv3d_1a: 64 outputs of 3 x 7 x 7 x 7 taps at (16/2) x (32/2) x (32/2) positions, 2 FLOPs a tap
    assert counted.forward["encoder.backbone.Conv3d_1a_7x7.conv"] == 2 * 64 * 8 * 16 * 16 * 3 * 7**3
    parts = flops.by_part(counted)
    assert sum(f + b for f, b in parts.values()) == counted.total
    assert parts["I3D backbone"][0] + parts["I3D backbone"][1] > 0.9 * counted.total
    assert parts["decoder: Mamba blocks (N_m)"][0] > 0
    attention_only = flops.by_part(flops.step_flops(replace(QUICK, mamba_blocks=0), 1, 16, 32))
    assert "decoder: Mamba blocks (N_m)" not in attention_only
    assert "| **step** |" in flops.format_flops_table(counted)


def test_the_loss_holds_no_matrix_products():
    criterion = SetCriterion(TrainConfig(), QUICK.num_classes)
    with torch.no_grad():
        output = Detector(QUICK)(torch.rand(1, 3, 16, 32, 32))
    output = replace(output, **{name: getattr(output, name).requires_grad_() for name in ("logits", "segments", "dense")})
    targets = train_step.random_targets(1, QUICK.num_classes)
    counted = count(criterion, lambda: criterion(output, targets)["total"].backward())
    assert counted.total == 0  # so the model's count is the step's


def test_matmul_rate_is_a_positive_rate():
    rate = flops.matmul_rate("cpu", torch.float32, size=64, repeats=3)
    assert math.isfinite(rate) and rate > 0
    assert "floor" in flops.floor_line(1e9, rate, torch.float32, torch.device("cpu"), 64)


# -- the training-step benchmark -------------------------------------------------------------------------


def test_decoder_ratio_and_tables():
    rows = [
        train_step.Row("decoder step", "attention", 1, [2.0, 1.0, 3.0], 100),
        train_step.Row("decoder step", "Mamba-MHSA", 1, [2.5, 2.2, 9.0], 150),
    ]
    assert train_step.decoder_ratio(rows) == pytest.approx(2.5 / 2.0)
    relative = train_step.format_decoder_table(rows, absolute=False)
    assert "1.25x" in relative and "1.50x" in relative and "ms" not in relative
    assert "2500.0" in train_step.format_decoder_table(rows, absolute=True)


def test_busy_fraction_merges_overlapping_intervals():
    assert train_step.busy_fraction([(5, 6), (0, 2), (1, 3)]) == (4, 6)
    assert train_step.busy_fraction([]) == (0.0, 0.0)


def test_profile_summary_from_cpu_events():
    a = torch.randn(64, 64)
    summary = train_step.cuda_profile(lambda: (a @ a).relu(), steps=3, device=torch.device("cpu"))
    assert summary["steps"] == 3 and 0.0 <= summary["busy"] <= 1.0
    assert abs(summary["busy"] + summary["idle"] - 1.0) < 1e-9
    names = [name for name, _, _ in summary["top_kernels"]]
    assert "aten::matmul" in names or "aten::mm" in names
    assert "| kernel |" in train_step.format_profile(summary)


@pytest.mark.slow
def test_train_step_quick_writes_both_parts(tmp_path):
    out = tmp_path / "step.json"
    assert train_step.main(["--quick", "--device", "cpu", "--threads", "1", "--json", str(out), "--readme", str(tmp_path / "README.md")]) == 0
    results = json.loads(out.read_text())
    decoder = results["decoder"]
    assert len(decoder["rows"]) == 4 and decoder["ratio"] > 0 and all(r["peak_bytes"] > 0 for r in decoder["rows"])
    (model,) = results["model"]["rows"]
    assert model["windows_per_s"] > 0 and model["peak_bytes"] > 0 and model["crop"] == 32
    assert 0 < model["matching_share"] <= model["loss_share"] < 1
    assert results["flops"]["per_window"] == flops.step_flops(QUICK, 1, 16, 32).total
    features = results["features"]
    assert [r["name"] for r in features["rows"]] == ["end to end (I3D + decoder)", "features mode (decoder on I3D features)"]
    assert features["speedup"] == pytest.approx(features["rows"][0]["median_s"] / features["rows"][1]["median_s"])
    assert features["speedup"] > 1  # the features-mode step skips I3D's forward and backward
    extract = features["extract"]
    assert extract["windows"] == 3 and extract["windows_per_s"] > 0 and extract["crop"] == 32 and extract["window"] == 16
    text = (tmp_path / "README.md").read_text()
    assert text.startswith("# Benchmarks") and "## Training step" in text and "Mamba-MHSA / attention decoder step" in text
    assert "features-mode step" in text and "extraction (frozen I3D" in text


def test_model_step_in_channels_last_with_shares_and_a_failing_compile(monkeypatch):
    def broken_compile(model):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken_compile)
    cfg = replace(QUICK, mamba_backend="torch")
    cases = [train_step.ModelCase(batch=2, channels_last=True)]
    logged = []
    (row,) = train_step.model_part(cfg, torch.device("cpu"), cases, 16, 32, repeats=1, warmup=0, compile_model=True, log=logged.append)
    assert row.name == "batch 2, channels_last_3d" and row.windows_per_s > 0 and row.peak_bytes > 0
    assert row.extra["compile"] == "failed (eager measured)" and "no compiler here" in logged[0]
    trainer, batch = train_step.make_trainer(cfg, torch.device("cpu"), 2, 16, 32, "unused")
    loss, matching = train_step.loss_shares(trainer, batch, torch.device("cpu"), steps=1)
    assert 0 < matching <= loss < 1


@pytest.mark.cuda
def test_train_step_quick_on_cuda(tmp_path):
    out = tmp_path / "step.json"
    argv = ["--quick", "--device", "cuda", "--profile", "--batch", "1", "2", "--layout", "both", "--json", str(out)]
    assert train_step.main(argv) == 0
    rows = json.loads(out.read_text())["model"]["rows"]
    assert len(rows) == 4 and all(r["peak_bytes"] > 0 and r["windows_per_s"] > 0 for r in rows)
    assert all(0 <= r["profile"]["idle"] <= 1 and r["profile"]["top_kernels"] for r in rows)


# -- data loading ------------------------------------------------------------------------------------------


def test_workers_needed():
    assert data_speed.workers_needed(25, 10) == 3
    assert data_speed.workers_needed(25, 12.5) == 2
    assert data_speed.workers_needed(25, 30) == 1


def test_data_speed_quick(tmp_path):
    step = tmp_path / "step.json"
    step.write_text(json.dumps({"model": {"rows": [{"windows_per_s": 4.0}, {"windows_per_s": 8.0}]}}))
    out = tmp_path / "data.json"
    assert data_speed.main(["--quick", "--step-json", str(step), "--json", str(out), "--readme", str(tmp_path / "README.md")]) == 0
    results = json.loads(out.read_text())
    paths = list(data_speed.PATHS)
    assert [(r["path"], r["workers"]) for r in results["rows"]] == [(p, w) for w in (0, 1) for p in paths]
    assert all(r["windows_per_s"] > 0 for r in results["rows"]) and results["step_rate"] == 8.0
    for path in paths:
        per_worker = next(r["windows_per_s"] for r in results["rows"] if r["path"] == path and r["workers"] == 1)
        assert results["workers_needed"][path] == data_speed.workers_needed(8.0, per_worker)
    # 3 x 64 x 32 x 32 pixels: float32 against uint8 plus the four jitter parameters
    assert results["bytes"] == {"float32 in the workers": 4 * 3 * 64 * 32 * 32, "uint8 to the device": 3 * 64 * 32 * 32 + 4 * 4}
    assert results["device"] == "cpu" and results["device_windows_per_s"] > 0
    assert set(results["stages"]) == {"read uint8 crop", "read + to float32", *(f"whole item, {p}" for p in paths)}
    text = (tmp_path / "README.md").read_text()
    assert "## Data loading" in text and "| uint8 to the device | 1 |" in text and "host-to-device a window" in text


# -- README sections, the GPU check ---------------------------------------------------------------------------


def test_write_section_replaces_only_its_own_section(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\nintro\n\n## Scan speed\n\nscan table\n\n## Training step\n\nold\n\n## Last\n\nend\n")
    report.write_section(readme, "## Training step", "new figures")
    text = readme.read_text()
    assert "scan table" in text and "new figures" in text and "old" not in text and text.endswith("## Last\n\nend\n")
    report.write_section(readme, "## Data loading", "loader")
    assert readme.read_text().rstrip().endswith("## Data loading\n\nloader")
    assert report.machine_line("cpu").count(";") >= 2


def test_training_stage_keeps_the_paper_model_and_optimisation(tmp_path):
    paper = load_config(gpu_check.PAPER_CONFIG)
    config = load_config(gpu_check.PAPER_CONFIG, gpu_check.training_overrides(tmp_path, False, 300, 8, None))
    assert replace(config.model, encoder_weights=paper.model.encoder_weights) == paper.model
    assert replace(config.train, out=paper.train.out, max_steps=None, eval_every=paper.train.eval_every) == paper.train
    assert config.data.root is None and config.data.window == 128 and config.data.crop == 224
    assert config.data.train_subjects == list(range(1, 25)) and config.train.max_steps == 300


def test_gpu_check_sh_installs_only_what_does_not_import(tmp_path):
    (tmp_path / "benchmarks").mkdir()
    shutil.copy(REPO / "benchmarks" / "gpu_check.sh", tmp_path / "benchmarks")
    (tmp_path / ".whl").mkdir()
    for name in ("tqdm-4.0-py3-none-any.whl", "pyyaml-6.0-cp312-cp312-manylinux_2_17_x86_64.whl", "nosuchpackage-1.0-py3-none-any.whl"):
        (tmp_path / ".whl" / name).write_bytes(b"")
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out")}
    done = subprocess.run(["bash", str(tmp_path / "benchmarks" / "gpu_check.sh"), "--dry-run", "--steps", "7"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    install, command = done.stdout.splitlines()
    assert "nosuchpackage" in install and "tqdm" not in install and "pyyaml" not in install
    assert command.endswith(f"benchmarks/gpu_check.py --steps 7 --out {tmp_path / 'out'}")
    for script in ("gpu_check.sh", "fetch_wheels.sh"):
        assert subprocess.run(["bash", "-n", str(REPO / "benchmarks" / script)]).returncode == 0


@pytest.mark.slow
def test_gpu_check_runs_every_stage_on_the_cpu_at_toy_sizes(tmp_path):
    assert gpu_check.main(["--cpu", "--tiny", "--skip-tests", "--out", str(tmp_path)]) == 0
    training = json.loads((tmp_path / "train.json").read_text())
    assert training["loss_falls"] and training["steps"] == 60 and training["windows_per_s"] > 0
    summary = (tmp_path / "summary.md").read_text()
    for row in ("decoder step, Mamba-MHSA / attention", "whole model, batch 1, 32 px", "training, toy sizes, 60 steps", "stage times",
                "features-mode step (decoder on I3D features)", "data loading, windows/s: uint8 to the device / float32 in the workers"):  # fmt: skip
        assert row in summary
    assert "0 workers" in summary and "1 workers" in summary and "4.0x fewer bytes" in summary
    assert all((tmp_path / f"{stage}.log").exists() for stage in ("step", "train", "data"))
