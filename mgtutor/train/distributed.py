"""Several GPUs or nodes through ``torchrun``; the same code runs unchanged in a single process.

``torchrun --nproc_per_node N -m mgtutor.cli train ...`` starts N processes and sets ``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` in each. :func:`init_distributed`
reads them, joins the process group (NCCL on CUDA, gloo on the CPU) and pins each process to its GPU.
Every process holds a full copy of the model (DistributedDataParallel averages the gradients during
``backward``) and reads its own share of the windows (a ``DistributedSampler``); only rank 0 logs,
draws progress bars and writes files. Without those variables the context is a single process of
rank 0 and nothing is wrapped.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset, DistributedSampler

from mgtutor.runtime import default_device

# Rank 0 evaluates while the others wait at a barrier: give it far longer than the 10-minute default.
TIMEOUT = datetime.timedelta(hours=2)


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: its rank among ``world_size`` processes and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """True on the one process that logs and writes checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device | str | None = None) -> DistributedContext:
    """Join the process group ``torchrun`` describes in the environment, or run as a single process.

    ``device`` forces the device type (e.g. ``"cpu"`` for a gloo test on a GPU machine); by default
    CUDA when it is visible. On CUDA each process takes GPU ``LOCAL_RANK``.
    """
    device = torch.device(device) if device is not None else default_device()
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistributedContext(device=device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, timeout=TIMEOUT, device_id=device if device.type == "cuda" else None)
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown_distributed(context: DistributedContext) -> None:
    """Leave the process group (a no-op in a single process); no waiting, so it also ends a failed run."""
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap_model(model: nn.Module, context: DistributedContext) -> nn.Module:
    """DistributedDataParallel around ``model`` (already on ``context.device``) when there are several processes."""
    if not context.enabled:
        return model
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def make_sampler(dataset: Dataset, context: DistributedContext, seed: int) -> DistributedSampler:
    """This process's share of a shuffled order that depends only on (seed, epoch).

    A ``DistributedSampler`` with one replica is a plain seeded shuffle, so a single process uses it too:
    call ``set_epoch(epoch)`` before each epoch and a resumed run sees the same windows in the same order.
    With several processes the order is padded (by repeating windows) to a multiple of ``world_size`` so
    every rank runs the same number of steps.
    """
    return DistributedSampler(dataset, num_replicas=context.world_size, rank=context.rank, shuffle=True, seed=seed)


def all_reduce_mean(values: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Mean of ``values`` over all processes (the tensor itself in a single process)."""
    if not context.enabled:
        return values
    values = values.clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / context.world_size


def all_gather_objects(obj: object, context: DistributedContext) -> list[object]:
    """``obj`` from every process, in rank order (``[obj]`` in a single process)."""
    if not context.enabled:
        return [obj]
    gathered: list[object] = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier(context: DistributedContext) -> None:
    """Wait until every process reaches this point (a no-op in a single process)."""
    if context.enabled:
        dist.barrier()
