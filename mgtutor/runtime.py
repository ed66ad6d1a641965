"""Where code runs: device choice and seeding, shared by training, notebooks and benchmarks."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def default_device() -> torch.device:
    """CUDA when a GPU is visible (and MGTUTOR_DEVICE does not say otherwise), else the CPU."""
    wanted = os.environ.get("MGTUTOR_DEVICE")
    if wanted:
        return torch.device(wanted)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (every device) so a run repeats exactly on the CPU."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def describe_device(device: torch.device | None = None) -> str:
    """One line naming the device: the GPU's name and memory, or the CPU's thread count."""
    device = device or default_device()
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"cuda: {props.name}, {props.total_memory / 2**30:.0f} GiB"
    return f"cpu: {torch.get_num_threads()} threads"
