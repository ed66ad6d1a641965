"""Floating-point operations of one training step, by module, and the floor time they set on a device.

    python benchmarks/flops.py                           # paper configuration: I3D at 128 x 224 x 224, batch 1
    python benchmarks/flops.py --crop 112 --rate-size 2048   # the CPU-scale step, rate of this CPU
    python benchmarks/flops.py --quick                   # tiny model, for a smoke test

What is counted: the operations of matrix products and convolutions (``mm``, ``addmm``, ``bmm``,
``convolution`` and their backward, attention kernels), 2 per multiply-add, as
``torch.utils.flop_counter`` counts them; element-wise work (norms, activations, the optimiser's update)
is left out: it moves memory rather than using the matrix units.

How it is counted without running the real thing: the model is built on PyTorch's "meta" device (shapes
only, no arithmetic), so the paper's 128 x 224 x 224 window costs seconds on any CPU. Forward and backward
run under :class:`ModuleFlops`, which charges every counted operation to the module that ran it:

- forward: the innermost module whose ``forward`` is running (module hooks keep a stack);
- backward: the module whose forward created the autograd node now running (after each module's forward,
  the nodes between its outputs and its inputs are tagged with its name; the innermost module keeps the
  tag). ``FlopCounterMode``'s own module tracker loses track in backward when a module's inputs need no
  gradient (it then charges the whole encoder's backward to ``query_points``), hence this mode.

One correction to ``torch.utils.flop_counter``: its backward formula for convolutions ignores ``groups``
(it charges Mamba's depthwise ``conv1d`` d_inner times too much); here each gradient a convolution's
backward computes (input, weight) costs what its forward costs, which equals torch's count when
``groups = 1``.

The floor: the step's operations over the device's matrix-product rate, measured in the same run with a
large product in the dtype training uses (bf16 on CUDA, float32 on the CPU). No implementation of the
step can run faster; achieved throughput is that floor over the measured step time.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import conv_flop_count, flop_registry

from mgtutor.config import ModelConfig
from mgtutor.model.detector import Detector, DetectorOutput

OUTSIDE = "(outside modules)"


@dataclass
class FlopCount:
    """Counted operations by module path (relative to the model, "" for the model itself)."""

    forward: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    backward: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def total_forward(self) -> int:
        return sum(self.forward.values())

    @property
    def total_backward(self) -> int:
        return sum(self.backward.values())

    @property
    def total(self) -> int:
        return self.total_forward + self.total_backward

    def add(self, other: FlopCount) -> FlopCount:
        out = FlopCount()
        for mine, theirs, dest in ((self.forward, other.forward, out.forward), (self.backward, other.backward, out.backward)):
            for source in (mine, theirs):
                for key, value in source.items():
                    dest[key] += value
        return out


class ModuleFlops(TorchDispatchMode):
    """Counts matrix-product and convolution FLOPs, forward and backward, by module of ``model`` (module doc).

    Use as a context manager around the forward and the backward of one step; read ``count`` afterwards.
    Operations outside every module of ``model`` are charged to :data:`OUTSIDE`.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.count = FlopCount()
        self._stack: list[str] = []
        self._owner: dict[object, str] = {}  # autograd node -> innermost module whose forward made it
        self._handles: list = []

    def __enter__(self):
        for name, module in self.model.named_modules():
            self._handles.append(module.register_forward_pre_hook(self._enter_module(name)))
            self._handles.append(module.register_forward_hook(self._leave_module(name), with_kwargs=True))
        return super().__enter__()

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        return super().__exit__(*exc)

    def _enter_module(self, name: str):
        def hook(module, args):
            self._stack.append(name)

        return hook

    def _leave_module(self, name: str):
        def hook(module, args, kwargs, output):
            self._stack.pop()
            self._tag(name, tree_leaves((args, kwargs)), tree_leaves(output))

        return hook

    def _tag(self, name: str, inputs: Iterable, outputs: Iterable) -> None:
        """Tag the untagged autograd nodes between ``outputs`` and ``inputs`` with ``name``."""
        stop = {x.grad_fn for x in inputs if isinstance(x, torch.Tensor) and x.grad_fn is not None}
        todo = [x.grad_fn for x in outputs if isinstance(x, torch.Tensor) and x.grad_fn is not None]
        seen = set()
        while todo:
            node = todo.pop()
            if node in seen or node in stop:
                continue
            seen.add(node)
            self._owner.setdefault(node, name)
            todo.extend(next_node for next_node, _ in node.next_functions if next_node is not None)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func.overloadpacket
        counter = flop_registry.get(packet)
        if counter is not None:
            if packet is torch.ops.aten.convolution_backward:
                flops = _convolution_backward_flops(*args)
            else:
                flops = counter(*args, **kwargs, out_val=out)
            node = torch._C._current_autograd_node()
            if node is None:
                self.count.forward[self._stack[-1] if self._stack else OUTSIDE] += flops
            else:
                self.count.backward[self._owner.get(node, OUTSIDE)] += flops
        return out


def _convolution_backward_flops(grad_out, x, weight, _bias, _stride, _padding, _dilation, transposed, _out_pad, _groups, mask) -> int:
    """Each requested gradient (input, weight) costs the forward's FLOPs; ``weight``'s shape already
    holds c_in / groups, so grouped convolutions come out right."""
    forward = conv_flop_count(list(x.shape), list(weight.shape), list(grad_out.shape), transposed=transposed)
    return forward * (int(mask[0]) + int(mask[1]))


def surrogate_loss(output: DetectorOutput) -> torch.Tensor:
    """A scalar that reads every output the set-prediction loss reads (all layers' logits and segments,
    the dense logits), so its backward runs through the same graph as the real loss's."""
    loss = output.logits.float().sum() + output.segments.float().sum()
    if output.dense is not None:
        loss = loss + output.dense.float().sum()
    return loss


def step_flops(cfg: ModelConfig, batch: int, window: int, crop: int) -> FlopCount:
    """Counted FLOPs of one training step: the detector's forward and backward for ``batch`` windows of
    ``window`` frames at ``crop`` x ``crop`` (or ``window // 4`` feature steps when ``cfg.encoder ==
    "features"``), on the meta device (module doc). The set-prediction loss adds none: its matching
    costs (an L1 ``cdist``, tIoU), cross-entropies and the dense head's BCE are element-wise work."""
    cfg = replace(cfg, encoder_weights=None)
    with torch.device("meta"):
        model = Detector(cfg)
        if cfg.encoder == "features":
            x = torch.empty(batch, cfg.feature_dim, window // 4)
        else:
            x = torch.empty(batch, 3, window, crop, crop)
    with ModuleFlops(model) as counter:
        surrogate_loss(model(x)).backward()
    return counter.count


# Rows of the table: (label, module path prefixes). A module's FLOPs go to the row with the longest prefix
# it starts with; "*" stands for any decoder layer, whose pieces are summed over the layers.
PARTS: list[tuple[str, tuple[str, ...]]] = [
    ("I3D backbone", ("encoder.backbone",)),
    ("encoder projection to d", ("encoder",)),
    ("dense head", ("dense_head",)),
    ("decoder: deformable sampling (eqs. 9-11)", ("decoder.layers.*.sampling",)),
    ("decoder: Mamba blocks (N_m)", ("decoder.layers.*.query_mixer.blocks",)),
    ("decoder: self-attention + norm", ("decoder.layers.*.query_mixer",)),
    ("decoder: mixing weight generators (eq. 12)", ("decoder.layers.*.mixing.channel_generator", "decoder.layers.*.mixing.frame_generator")),
    ("decoder: frame + channel mixing (eqs. 13-14)", ("decoder.layers.*.mixing",)),
    ("decoder: fuse (eq. 15)", ("decoder.layers.*.mixing.fuse", "decoder.layers.*.mixing.fuse_norm")),
    ("decoder: FFN", ("decoder.layers.*.ffn",)),
    ("decoder: class + point heads", ("decoder.layers.*.class_head", "decoder.layers.*.point_head")),
    ("decoder: rest of the layers", ("decoder",)),
    ("rest of the model", ("", OUTSIDE)),
]


def _part_of(path: str) -> str:
    generic = re.sub(r"layers\.\d+", "layers.*", path)
    best, best_len = PARTS[-1][0], -1
    for label, prefixes in PARTS:
        for prefix in prefixes:
            matches = generic == prefix or generic.startswith(prefix + ".") or prefix == ""
            if matches and len(prefix) > best_len:
                best, best_len = label, len(prefix)
    return best


def by_part(count: FlopCount) -> dict[str, tuple[int, int]]:
    """{row label: (forward, backward)} in :data:`PARTS`' order; rows with no FLOPs are left out."""
    parts = {label: [0, 0] for label, _ in PARTS}
    for path, flops in count.forward.items():
        parts[_part_of(path)][0] += flops
    for path, flops in count.backward.items():
        parts[_part_of(path)][1] += flops
    return {label: (f, b) for label, (f, b) in parts.items() if f or b}


def format_flops_table(count: FlopCount) -> str:
    """A Markdown table of GFLOPs by part (forward, backward, total, share of the step)."""
    total = count.total
    lines = ["| part | forward GFLOP | backward GFLOP | total GFLOP | share |", "|---|---:|---:|---:|---:|"]
    for label, (f, b) in by_part(count).items():
        lines.append(f"| {label} | {f / 1e9:.3f} | {b / 1e9:.3f} | {(f + b) / 1e9:.3f} | {100 * (f + b) / total:.2f}% |")
    lines.append(
        f"| **step** | **{count.total_forward / 1e9:.1f}** | **{count.total_backward / 1e9:.1f}** | **{total / 1e9:.1f}** | 100% |"
    )
    return "\n".join(lines)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: torch.device | str, dtype: torch.dtype, size: int, repeats: int = 10) -> float:
    """Measured FLOP/s of a ``size`` x ``size`` x ``size`` matrix product (median of ``repeats``, after a
    warm-up), on random data: the ceiling the floor time is computed from."""
    device = torch.device(device)
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=gen)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=gen)
    out = torch.empty(size, size, device=device, dtype=dtype)
    for _ in range(2):
        torch.matmul(a, b, out=out)
    times = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        torch.matmul(a, b, out=out)
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / sorted(times)[len(times) // 2]


def training_dtype(device: torch.device) -> torch.dtype:
    """The dtype of the step's matrix products: bf16 under CUDA autocast, float32 on the CPU."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def format_rate(flops_per_s: float) -> str:
    return f"{flops_per_s / 1e12:.1f} TFLOP/s" if flops_per_s >= 1e12 else f"{flops_per_s / 1e9:.1f} GFLOP/s"


def floor_line(flops_per_window: float, rate: float, dtype: torch.dtype, device: torch.device, size: int) -> str:
    floor_s = flops_per_window / rate
    return (
        f"matrix-product rate ({device.type}, {str(dtype).removeprefix('torch.')}, {size}^3): {format_rate(rate)}; "
        f"floor {floor_s * 1e3:.2f} ms a window = at most {1 / floor_s:.0f} windows/s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tiny model and window, for a smoke test")
    parser.add_argument("--window", type=int, default=128, help="frames per window (default 128)")
    parser.add_argument("--crop", type=int, default=224, help="crop size in pixels (default 224)")
    parser.add_argument("--batch", type=int, default=1, help="windows per step (FLOPs are given per window)")
    parser.add_argument("--mamba-blocks", type=int, default=2, help="N_m (0: PointTAD's self-attention)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="where to measure the matrix-product rate")
    parser.add_argument("--rate-size", type=int, help="matrix size for the rate (default 8192 on CUDA, 2048 on the CPU)")
    parser.add_argument("--no-rate", action="store_true", help="count only; do not measure the matrix-product rate")
    args = parser.parse_args(argv)

    cfg = ModelConfig(encoder="i3d", mamba_blocks=args.mamba_blocks)
    window, crop = args.window, args.crop
    if args.quick:
        cfg = replace(cfg, hidden=64, queries=8, points=6, layers=2, heads=4, ffn=128, mix_dim=8, boundary_points=2)
        window, crop = 16, 32
    count = step_flops(cfg, args.batch, window, crop)
    per_window = count.total / args.batch
    print(f"one training step, batch {args.batch}, window {window} frames at {crop}x{crop}, N_m = {cfg.mamba_blocks}")
    print(format_flops_table(count))
    print(f"{per_window / 1e9:.1f} GFLOP a window")
    if not args.no_rate:
        device = torch.device(args.device)
        size = args.rate_size or (256 if args.quick else 8192 if device.type == "cuda" else 2048)
        dtype = training_dtype(device)
        print(floor_line(per_window, matmul_rate(device, dtype, size), dtype, device, size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
