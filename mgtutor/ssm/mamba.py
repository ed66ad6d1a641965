"""The Mamba block (paper section 3.5; Gu & Dao 2023), in pure PyTorch with an optional fused path.

Axis names: b batch, l length, d channels (d_inner = expand * d_model), n state size (d_state),
r the rank of the Delta projection (dt_rank), w the convolution width (d_conv).

One block maps x (b, l, d_model) to (b, l, d_model):

    x, z = in_proj(x)                            two branches, each (b, l, d_inner)
    x    = silu(causal depthwise conv1d(x))      local mixing along time
    Delta_raw, B, C = x_proj(x)                  input-dependent SSM parameters: the selectivity
    Delta = softplus(dt_proj(Delta_raw))         one step size per channel and time step (eqs. 4-5)
    y    = selective_scan(x, Delta, A, B, C, D)  the recurrence, A = -exp(A_log) (eqs. 6-7)
    out  = out_proj(y * silu(z))                 gated by the other branch

Parameter names and shapes are those of ``mamba_ssm.modules.mamba_simple.Mamba`` (``in_proj, conv1d,
x_proj, dt_proj, A_log, D, out_proj``), and so is the initialisation, so state dicts load either way.
"""

from __future__ import annotations

import functools
import importlib
import math
from typing import Literal, get_args

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import einsum, rearrange, repeat

from mgtutor.ssm.scan import selective_scan

Backend = Literal["torch", "mamba_ssm", "auto"]  # also the allowed model.mamba_backend
BACKENDS: tuple[str, ...] = get_args(Backend)

# Builds mamba-ssm's CUDA kernels with every release: up to 2.3.2.post1 MAMBA_FORCE_BUILD=TRUE compiles them;
# later releases compile the selective-scan kernels only when MAMBA_KEEP_CUDA_BUILD=TRUE asks for them.
INSTALL_COMMAND = "MAMBA_FORCE_BUILD=TRUE MAMBA_KEEP_CUDA_BUILD=TRUE pip install --no-build-isolation 'mgtutor[cuda]'"

_INSTALL_HINT = (
    "the 'mamba_ssm' backend needs the mamba-ssm package with its compiled CUDA kernels (the selective_scan_cuda "
    f"extension): on a machine with a CUDA build of torch and nvcc, run {INSTALL_COMMAND} (or use backend='torch')"
)


def _fused_scan_fn():
    """mamba_ssm's fused CUDA ``selective_scan_fn``, imported only when asked for, and only when its compiled
    kernels are really there: releases after 2.3.2.post1 import without them and fail at the first call."""
    try:
        from mamba_ssm.ops import selective_scan_interface
    except ImportError as err:  # up to 2.3.2.post1 also raised when its CUDA extension failed to build or load
        raise ImportError(f"{_INSTALL_HINT} (import failed: {err})") from err
    if getattr(selective_scan_interface, "selective_scan_cuda", None) is None:
        try:
            importlib.import_module("selective_scan_cuda")
        except ImportError as err:
            raise ImportError(f"{_INSTALL_HINT} (mamba_ssm imports, but its compiled kernels do not: {err})") from err
    return selective_scan_interface.selective_scan_fn


@functools.cache
def _fused_available() -> bool:
    """Whether ``backend="auto"`` may choose the fused scan: mamba_ssm and its compiled kernels import."""
    try:
        _fused_scan_fn()
    except ImportError:
        return False
    return True


class Mamba(nn.Module):
    """Mamba's selective SSM block, mirroring ``mamba_ssm.modules.mamba_simple.Mamba``.

    Args:
        d_model: input and output channels.
        d_state: state size n per channel.
        d_conv: width of the causal depthwise convolution.
        expand: d_inner = expand * d_model.
        dt_rank: rank of the Delta projection; "auto" gives ceil(d_model / 16).
        dt_min, dt_max: range of the initial step sizes Delta (log-uniform).
        dt_init: "random" (uniform dt_proj weights) or "constant".
        dt_scale: scales dt_proj's initial weights.
        dt_init_floor: smallest initial Delta.
        conv_bias: whether conv1d has a bias.
        bias: whether in_proj and out_proj have biases.
        backend: "torch" (mgtutor's chunked scan, any device), "mamba_ssm" (the package's fused CUDA
            scan; an error naming the install command when it or its compiled kernels do not import), or
            "auto" (the fused scan when both import and the input is on CUDA, else "torch").
        device, dtype: as for ``nn.Linear``.

    Forward: x (b, l, d_model) -> (b, l, d_model).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        backend: Backend = "torch",
        device=None,
        dtype=None,
    ):
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if dt_init not in ("random", "constant"):
            raise ValueError(f"dt_init must be 'random' or 'constant', got {dt_init!r}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        if backend == "mamba_ssm":
            _fused_scan_fn()  # fail now with the install hint rather than at the first forward
        factory = {"device": device, "dtype": dtype}
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.backend = backend

        # created in the public block's order, so one seed gives the same weights in both
        self.in_proj = nn.Linear(d_model, self.d_inner * 2, bias=bias, **factory)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner,
            padding=d_conv - 1, bias=conv_bias, **factory,
        )
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False, **factory)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True, **factory)

        # dt_proj keeps the variance of Delta_raw; its bias puts softplus(bias) log-uniformly in
        # [dt_min, dt_max], so each channel starts with its own time scale
        dt_init_std = self.dt_rank**-0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, dt_init_std)
        else:
            nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
        dt = torch.exp(
            torch.rand(self.d_inner, **factory) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        ).clamp(min=dt_init_floor)
        inv_softplus_dt = dt + torch.log(-torch.expm1(-dt))
        with torch.no_grad():
            self.dt_proj.bias.copy_(inv_softplus_dt)
        # a later generic re-initialisation of Linear biases must leave this one alone
        self.dt_proj.bias._no_reinit = True

        # S4D-real initialisation: A = -(1, 2, ..., n) in every channel, stored as log in float32
        A = repeat(torch.arange(1, d_state + 1, dtype=torch.float32, device=device), "n -> d n", d=self.d_inner)
        self.A_log = nn.Parameter(torch.log(A).contiguous())
        self.A_log._no_weight_decay = True
        self.A_log._no_reinit = True
        self.D = nn.Parameter(torch.ones(self.d_inner, device=device))
        self.D._no_weight_decay = True
        self.D._no_reinit = True

        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias, **factory)

    def ssm_parameters(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Delta_raw (b, d, l) before bias and softplus, B and C (b, n, l), from the conv output x (b, d, l)."""
        x_dbl = self.x_proj(rearrange(x, "b d l -> b l d"))
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = einsum(self.dt_proj.weight, dt, "d r, b l r -> b d l")
        return delta, rearrange(B, "b l n -> b n l").contiguous(), rearrange(C, "b l n -> b n l").contiguous()

    def _use_fused(self, x: torch.Tensor) -> bool:
        if self.backend == "mamba_ssm":
            if not x.is_cuda:
                raise RuntimeError("backend='mamba_ssm' runs on CUDA only; move the input to a GPU or use backend='torch'")
            return True
        return self.backend == "auto" and x.is_cuda and _fused_available()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """hidden_states (b, l, d_model) -> (b, l, d_model)."""
        if hidden_states.dim() != 3 or hidden_states.shape[-1] != self.d_model:
            raise ValueError(f"expected (b, l, {self.d_model}), got shape {tuple(hidden_states.shape)}")
        seqlen = hidden_states.shape[1]
        xz = rearrange(self.in_proj(hidden_states), "b l e -> b e l")
        x, z = xz.chunk(2, dim=1)
        # padding d_conv - 1 on both sides, then keeping the first l outputs: a causal convolution
        x = F.silu(self.conv1d(x)[..., :seqlen])
        delta, B, C = self.ssm_parameters(x)
        A = -torch.exp(self.A_log.float())
        scan = _fused_scan_fn() if self._use_fused(x) else selective_scan
        y = scan(
            x, delta, A, B, C, self.D.float(), z=z,
            delta_bias=self.dt_proj.bias.float(), delta_softplus=True,
        )
        return self.out_proj(rearrange(y, "b d l -> b l d"))

    def allocate_inference_state(self, batch: int, dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Zero states for `step`: conv_state (b, d_inner, d_conv) and ssm_state (b, d_inner, d_state)."""
        device = self.out_proj.weight.device
        conv_state = torch.zeros(batch, self.d_inner, self.d_conv, device=device, dtype=dtype or self.conv1d.weight.dtype)
        ssm_state = torch.zeros(batch, self.d_inner, self.d_state, device=device, dtype=dtype or self.dt_proj.weight.dtype)
        return conv_state, ssm_state

    def step(
        self, hidden_states: torch.Tensor, conv_state: torch.Tensor, ssm_state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One token of recurrent inference: the same map as `forward`, one time step at a time.

        hidden_states (b, d_model) (or (b, 1, d_model), the public block's layout); conv_state
        (b, d_inner, d_conv) holds the last d_conv inputs of the convolution and ssm_state
        (b, d_inner, d_state) the SSM state h_{t-1}. Both are updated in place and returned.
        Returns (out with hidden_states' shape, conv_state, ssm_state).
        """
        token_axis = hidden_states.dim() == 3
        if token_axis:
            if hidden_states.shape[1] != 1:
                raise ValueError(f"step takes one token at a time, got length {hidden_states.shape[1]}")
            hidden_states = hidden_states[:, 0]
        x, z = self.in_proj(hidden_states).chunk(2, dim=-1)  # (b, d_inner) each

        conv_state.copy_(torch.roll(conv_state, shifts=-1, dims=-1))
        conv_state[:, :, -1] = x
        x = einsum(conv_state, rearrange(self.conv1d.weight, "d 1 w -> d w"), "b d w, d w -> b d")
        if self.conv1d.bias is not None:
            x = x + self.conv1d.bias
        x = F.silu(x)

        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(F.linear(dt, self.dt_proj.weight) + self.dt_proj.bias)  # (b, d_inner)
        A = -torch.exp(self.A_log.float())
        dA = torch.exp(einsum(delta, A, "b d, d n -> b d n"))
        dBx = einsum(delta * x, B, "b d, b n -> b d n")
        ssm_state.copy_(ssm_state * dA + dBx)
        y = einsum(ssm_state.to(x.dtype), C, "b d n, b n -> b d") + self.D.to(x.dtype) * x
        out = self.out_proj(y * F.silu(z))
        return (out[:, None] if token_axis else out), conv_state, ssm_state

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, d_state={self.d_state}, d_inner={self.d_inner}, dt_rank={self.dt_rank}, backend={self.backend!r}"
