"""Several processes through torchrun: gloo on the CPU, DDP keeps the ranks' weights equal.

The two-process test runs this file itself under ``python -m torch.distributed.run`` (see the
``__main__`` block), so the process group is built from torchrun's environment exactly as in a real job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

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

HERE = Path(__file__).resolve().parent


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


@pytest.mark.slow
def test_two_processes_on_gloo_keep_equal_weights_and_only_rank0_writes(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = os.environ | {"OMP_NUM_THREADS": "1", "MGTUTOR_DEVICE": "cpu"}
    result = subprocess.run(
        [*command, str(Path(__file__).resolve()), str(tmp_path)], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())

    assert report["world_size"] == 2
    assert report["initial_equal"]  # DDP broadcast rank 0's weights although rank 1 started elsewhere
    assert report["final_equal"] and report["changed"]
    first, second = report["windows"]
    assert set(first).isdisjoint(second) and len(first) == len(second)  # each rank its own windows
    assert report["steps"] == 2 and report["losses_equal"]  # losses are averaged over the ranks

    assert sorted(p.name for p in (tmp_path / "rank0").iterdir()) == ["config.yaml", "last.pt", "log.jsonl"]
    assert not (tmp_path / "rank1").exists()


def _worker(folder: Path) -> None:
    """One rank of the torchrun job: train two steps, then compare weights across ranks."""
    sys.path.insert(0, str(HERE))
    from test_engine import TinyCriterion, TinyDetector, TinyWindows, tiny_collate, tiny_config

    from mgtutor.train.engine import Trainer

    context = init_distributed("cpu")
    # Each rank has its own output folder here so the test can tell which rank wrote what.
    config = tiny_config(folder / f"rank{context.rank}", epochs=1, max_steps=2)
    torch.manual_seed(context.rank)  # different initial weights: DDP must broadcast rank 0's
    model = TinyDetector()
    initial = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
    trainer = Trainer(config, model, TinyCriterion(), TinyWindows(), collate_fn=tiny_collate, context=context, progress=False)
    synced = torch.nn.utils.parameters_to_vector(trainer.model.parameters()).detach().clone()
    trainer.sampler.set_epoch(0)
    windows = list(trainer.sampler)[: 2 * config.train.batch_size]
    trainer.fit()
    final = torch.nn.utils.parameters_to_vector(trainer.model.parameters()).detach()

    gathered = all_gather_objects({"synced": synced, "final": final, "steps": trainer.steps, "windows": windows}, context)
    if context.is_main:
        report = {
            "world_size": context.world_size,
            "initial_equal": torch.equal(gathered[0]["synced"], gathered[1]["synced"]),
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
    _worker(Path(sys.argv[1]))
