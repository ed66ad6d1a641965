"""Several processes through torchrun: gloo on the CPU, DDP keeps the ranks' weights equal.

The two-process test runs this file itself under ``python -m torch.distributed.run`` (see the
``__main__`` block), so the process group is built from torchrun's environment exactly as in a real job,
and trains the real detector (small encoder) and losses on a tiny synthetic set the job writes itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from mgtutor.config import load_config
from mgtutor.data.synthetic import MARKER
from mgtutor.train.engine import build_trainer

from mgtutor.train.distributed import (
    DistributedContext,
    all_gather_objects,
    all_reduce_mean,
    barrier,
    init_distributed,
    make_sampler,
    shutdown_distributed,
    unwrap_model,
    wrap_model,
)

def test_single_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    context = init_distributed("cpu")
    assert context == DistributedContext(device=torch.device("cpu")) and context.is_main and not context.enabled
    model = nn.Linear(2, 2)
    assert wrap_model(model, context) is model and unwrap_model(model) is model
    values = torch.tensor([1.0, float("nan")])
    assert all_reduce_mean(values, context) is values
    assert all_gather_objects({"a": 1}, context) == [{"a": 1}]
    sampler = make_sampler(range(10), context, seed=3)
    sampler.set_epoch(2)
    order = list(sampler)
    assert sorted(order) == list(range(10))
    sampler.set_epoch(2)
    assert list(sampler) == order  # a function of (seed, epoch) alone
    shutdown_distributed(context)


def tiny_config_file(folder: Path) -> Path:
    """A tiny run of the small encoder on a synthetic set that the job itself writes (rank 0 does)."""
    values = {
        "data": {
            "synthetic_dir": str(folder / "synthetic"), "synthetic_sequences": 2, "synthetic_seconds": 12,
            "synthetic_size": 40, "train_subjects": [1, 2], "test_subjects": [2], "window": 32, "short_side": 40,
            "crop": 32,
        },
        "model": {
            "encoder": "small", "hidden": 32, "queries": 8, "points": 9, "layers": 2, "heads": 4, "ffn": 64,
            "mix_dim": 8, "mamba_blocks": 1,
        },
        "train": {"epochs": 1, "max_steps": 2, "batch_size": 2, "lr": 1e-3},
    }  # fmt: skip
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.mark.slow
def test_two_processes_on_gloo_keep_equal_weights_and_only_rank0_writes(tmp_path):
    config_file = tiny_config_file(tmp_path)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*command, str(Path(__file__).resolve()), str(config_file), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())

    assert report["world_size"] == 2
    assert report["final_equal"] and report["changed"]
    first, second = report["windows"]
    assert set(first).isdisjoint(second) and len(first) == len(second) == 4  # each rank its own windows
    assert report["steps"] == 2 and report["losses_equal"]  # losses are averaged over the ranks

    assert sorted(p.name for p in (tmp_path / "rank0").iterdir()) == ["config.yaml", "last.pt", "log.jsonl"]
    assert (tmp_path / "synthetic" / MARKER).exists()  # written once, by rank 0, before rank 1 read it
    assert not (tmp_path / "rank1").exists()


def _worker(config_file: Path, folder: Path) -> None:
    """One rank of the torchrun job: train two steps of the real detector, then compare across ranks."""
    context = init_distributed("cpu")
    # Each rank has its own output folder here so the test can tell which rank wrote what.
    config = load_config(config_file, [f"train.out={folder / f'rank{context.rank}'}"])
    steps = []
    trainer = build_trainer(config, context=context, progress=False, on_step=lambda *step: steps.append(step))
    initial = torch.nn.utils.parameters_to_vector(trainer.model.parameters()).detach().clone()
    trainer.sampler.set_epoch(0)
    windows = list(trainer.sampler)[: 2 * config.train.batch_size]
    trainer.fit()
    final = torch.nn.utils.parameters_to_vector(trainer.model.parameters()).detach()

    gathered = all_gather_objects({"final": final, "steps": steps, "windows": windows}, context)
    if context.is_main:
        report = {
            "world_size": context.world_size,
            "final_equal": torch.equal(gathered[0]["final"], gathered[1]["final"]),
            "changed": not torch.equal(initial, final),
            "windows": [g["windows"] for g in gathered],
            "steps": trainer.global_step,
            "losses_equal": gathered[0]["steps"] == gathered[1]["steps"],
        }
        (folder / "report.json").write_text(json.dumps(report))
    barrier(context)
    shutdown_distributed(context)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]), Path(sys.argv[2]))
