"""Timing and peak memory of selective-scan implementations, measured side by side.

Used by ``benchmarks/scan_speed.py`` (the full table) and notebook 02 (a small one). The contenders all
compute the same map as `mgtutor.ssm.selective_scan` with ``delta_softplus=True``, D, z and delta_bias:

    "mgtutor"      the default chunked scan with its hand-written backward
    "loop"         `selective_scan_loop`: a well-written sequential loop over ``unbind`` slices
    "naive loop"   the public reference's loop, indexing ``deltaA[:, :, i]`` of a tensor that needs grad
                   each step; every index's backward scatters into a fresh full-size zero tensor, so its
                   backward grows with l^2
    "mambapy"      ``mambapy.pscan.pscan`` (Blelloch parallel scan) over the materialised (b, l, d, n)
                   A_bar and B_bar u, as mambapy's own ``selective_scan`` does (benchmark-only dependency)

Peak memory is counted without touching the allocator: a ``TorchDispatchMode`` sees every tensor an
operation returns (forward and backward), adds its storage's bytes when that storage first appears and
subtracts them when the storage is freed (a ``weakref.finalize`` on it). The peak of that running sum is
the most tensor memory alive at once beyond the inputs; kernels' private scratch space is not included.
"""

from __future__ import annotations

import math
import os
import platform
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import einsum, rearrange, repeat
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from mgtutor.ssm.scan import selective_scan, selective_scan_loop

Scan = Callable[..., torch.Tensor]


def scan_inputs(b: int, d: int, n: int, l: int, dtype=torch.float32, seed: int = 0) -> dict[str, torch.Tensor]:
    """Inputs shaped and scaled as in a Mamba block: A = -exp(A_log) = -(1..n), Delta through softplus."""
    gen = torch.Generator().manual_seed(seed)
    dt = torch.exp(torch.rand(d, generator=gen) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    inputs = {
        "u": torch.randn(b, d, l, generator=gen),
        "delta": 0.5 * torch.randn(b, d, l, generator=gen),
        "A": -repeat(torch.arange(1, n + 1.0), "n -> d n", d=d),
        "B": torch.randn(b, n, l, generator=gen),
        "C": torch.randn(b, n, l, generator=gen),
        "D": torch.ones(d),
        "z": torch.randn(b, d, l, generator=gen),
        "delta_bias": dt + torch.log(-torch.expm1(-dt)),
    }
    return {k: v.to(dtype) for k, v in inputs.items()}


def _around(core: Callable) -> Scan:
    """Bias, softplus, skip and gate around a core (u, delta, A, B, C) -> y (b, d, l)."""

    def scan(u, delta, A, B, C, D, z, delta_bias):
        delta = F.softplus(delta + rearrange(delta_bias, "d -> d 1"))
        y = core(u, delta, A, B, C)
        return (y + u * rearrange(D, "d -> d 1")) * F.silu(z)

    return scan


def _naive_core(u, delta, A, B, C):
    deltaA = torch.exp(einsum(delta, A, "b d l, d n -> b d l n"))
    deltaB_u = einsum(delta, B, u, "b d l, b n l, b d l -> b d l n")
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for i in range(u.shape[2]):
        h = deltaA[:, :, i] * h + deltaB_u[:, :, i]
        ys.append(einsum(h, C[:, :, i], "b d n, b n -> b d"))
    return torch.stack(ys, dim=2)


def _mambapy_core(u, delta, A, B, C):
    from mambapy.pscan import pscan  # benchmark-only dependency (pip install mambapy)

    deltaA = torch.exp(einsum(delta, A, "b d l, d n -> b l d n"))
    deltaB_u = einsum(delta * u, B, "b d l, b n l -> b l d n")
    hs = pscan(deltaA, deltaB_u)
    return einsum(hs, C, "b l d n, b n l -> b d l")


def contenders(with_mambapy: bool = True) -> dict[str, Scan]:
    """The implementations compared, each f(u, delta, A, B, C, D, z, delta_bias) -> (b, d, l)."""
    scans: dict[str, Scan] = {
        "mgtutor": lambda u, delta, A, B, C, D, z, delta_bias: selective_scan(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus=True
        ),
        "loop": lambda u, delta, A, B, C, D, z, delta_bias: selective_scan_loop(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus=True
        ),
        "naive loop": _around(_naive_core),
    }
    if with_mambapy:
        scans["mambapy"] = _around(_mambapy_core)
    return scans


class PeakTensorMemory(TorchDispatchMode):
    """Peak bytes of tensor storages created while active and alive at the same time (see module doc)."""

    def __init__(self):
        super().__init__()
        self.live: dict[int, int] = {}
        self.now = 0
        self.peak = 0

    def _free(self, key: int) -> None:
        self.now -= self.live.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for x in tree_leaves(out):
            if not isinstance(x, torch.Tensor):
                continue
            storage = x.untyped_storage()
            key, size = storage.data_ptr(), storage.nbytes()
            if size == 0 or key in self.live:  # a view or an in-place result of a counted storage
                continue
            self.live[key] = size
            self.now += size
            self.peak = max(self.peak, self.now)
            weakref.finalize(storage, self._free, key)
        return out


def _forward(scan: Scan, inputs: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        scan(**inputs)


def _forward_backward(scan: Scan, inputs: dict[str, torch.Tensor]) -> None:
    leaves = {k: v.detach().requires_grad_() for k, v in inputs.items()}
    out = scan(**leaves)
    out.backward(torch.ones_like(out))


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


def seconds(fn: Callable[[], None], clock: str = "wall") -> float:
    """Seconds ``fn`` takes on the "wall" clock, or the CPU time of this process ("cpu").

    With one torch thread the CPU time is the wall time the run would take on an idle machine, and it
    does not count the time other processes hold the cores: on a shared machine it is the steadier clock.
    """
    now = CLOCKS[clock]
    start = now()
    fn()
    return now() - start


def peak_bytes(fn: Callable[[], None]) -> int:
    with PeakTensorMemory() as counter:
        fn()
    return counter.peak


@dataclass
class Row:
    length: int
    method: str
    forward_s: float | None
    backward_s: float | None  # forward + backward
    peak_bytes: int | None  # forward + backward


def measure(
    scans: dict[str, Scan],
    lengths: list[int],
    b: int = 1,
    d: int = 1024,
    n: int = 16,
    repeats: int = 3,
    naive_budget_s: float = 15.0,
    memory: bool = True,
    clock: str = "wall",
    log: Callable[[str], None] | None = None,
) -> list[Row]:
    """Time (best of ``repeats`` on ``clock``, see `seconds`; the contenders interleaved so that load on
    the machine hits them alike) and peak memory of each scan at each length.

    "naive loop" runs once per length, and only while its forward + backward, extrapolated
    quadratically from the previous length, stays under ``naive_budget_s``.
    """
    rows = []
    naive_last: tuple[int, float] | None = None
    for l in lengths:
        inputs = scan_inputs(b, d, n, l)
        names = list(scans)
        if "naive loop" in names and naive_last is not None:
            prev_l, prev_s = naive_last
            if prev_s * (l / prev_l) ** 2 > naive_budget_s:
                names.remove("naive loop")
        best = {name: [math.inf, math.inf] for name in names}
        for name in names:  # warm-up: first-call allocations and lazy imports
            _forward(scans[name], inputs) if name == "naive loop" else _forward_backward(scans[name], inputs)
        for r in range(repeats):
            for name in names:
                if name == "naive loop" and r > 0:
                    continue
                best[name][0] = min(best[name][0], seconds(lambda: _forward(scans[name], inputs), clock))
                best[name][1] = min(best[name][1], seconds(lambda: _forward_backward(scans[name], inputs), clock))
        for name in scans:
            if name not in names:
                rows.append(Row(l, name, None, None, None))
                continue
            peak = peak_bytes(lambda: _forward_backward(scans[name], inputs)) if memory and name != "naive loop" else None
            rows.append(Row(l, name, best[name][0], best[name][1], peak))
            if log:
                log(f"l={l} {name}: {best[name][0] * 1e3:.1f} ms / {best[name][1] * 1e3:.1f} ms")
        if "naive loop" in names:
            naive_last = (l, best["naive loop"][1])
    return rows


def speedups(rows: list[Row], reference: str = "mgtutor") -> dict[tuple[int, str], tuple[float | None, float | None]]:
    """(other's time / reference's time) for forward and forward + backward, per (length, other)."""
    ref = {r.length: r for r in rows if r.method == reference}
    out = {}
    for r in rows:
        if r.method == reference:
            continue
        base = ref[r.length]
        out[(r.length, r.method)] = tuple(
            None if mine is None or theirs is None else theirs / mine
            for mine, theirs in ((base.forward_s, r.forward_s), (base.backward_s, r.backward_s))
        )
    return out


def format_table(rows: list[Row], b: int, d: int, n: int, reference: str = "mgtutor") -> str:
    """A Markdown table: times, peak memory, and how many times faster the reference is."""
    ratio = speedups(rows, reference)

    def ms(s):
        return "-" if s is None else f"{s * 1e3:.1f}"

    def x(v):
        return "-" if v is None else f"{v:.1f}x"

    lines = [
        f"| l | scan | forward ms | fwd+bwd ms | peak MiB (fwd+bwd) | {reference} faster, fwd | {reference} faster, fwd+bwd |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        mem = "-" if r.peak_bytes is None else f"{r.peak_bytes / 2**20:.1f}"
        fwd, both = ratio.get((r.length, r.method), (None, None))
        lines.append(f"| {r.length} | {r.method} | {ms(r.forward_s)} | {ms(r.backward_s)} | {mem} | {x(fwd)} | {x(both)} |")
    states = {r.length: b * r.length * d * n * 4 / 2**20 for r in rows}
    lines.append("")
    lines.append(
        "All (b, l, d, n) float32 states would take "
        + ", ".join(f"{size:.0f} MiB at l = {l}" for l, size in states.items()) + "."
    )
    return "\n".join(lines)


def machine() -> str:
    """CPU model, cores, threads torch uses, torch version and load average: what the timings depend on."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (
        f"{model}; {os.cpu_count()} logical cores; torch {torch.__version__} using "
        f"{torch.get_num_threads()} thread(s); load average {load}"
    )
