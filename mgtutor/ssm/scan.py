"""The selective scan: Mamba's input-dependent SSM recurrence (paper section 3.5, eqs. 4-7).

Axis names (paper symbols in brackets):
    b  batch
    d  channels, one independent SSM each (D, Mamba's d_inner)
    l  length, time steps (L)
    n  state size per channel (N, d_state)
    t  time steps inside one chunk
    g  groups of channels sharing one B or C

For every channel d and time step t, with h the (n,)-sized hidden state,

    A_bar_t = exp(Delta_t A)                    (zero-order hold, eq. 4)
    h_t     = A_bar_t * h_{t-1} + Delta_t B_t u_t   (eq. 6, with eq. 5 simplified to Delta B)
    y_t     = <C_t, h_t> + D u_t                (eq. 7, plus a skip)

and the output is optionally gated: out = y * silu(z).

`selective_scan` takes the arguments, layout and result of the public reference scan
``mamba_ssm.ops.selective_scan_interface.selective_scan_ref``, so either can stand in for the other.
Two implementations sit behind it:

* `selective_scan_loop`: one step at a time, the readable reference;
* the default chunked scan: the same recurrence run through a `torch.autograd.Function` that keeps only
  the state at each chunk boundary and recomputes a chunk's states in the backward pass, where the
  gradient runs as the reverse-time recurrence g_t = C_t dy_t + A_bar_{t+1} g_{t+1}. Its per-chunk
  buffers stay in the CPU cache and no (b, l, d, n) tensor of states is ever kept.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from einops import einsum, rearrange, repeat

# A chunk holds at most MAX_CHUNK steps and about CHUNK_ELEMENTS state elements (steps x b x d x n,
# 2 MiB of float32): small enough for the CPU cache, large enough that the per-chunk vectorised work
# outweighs Python's per-operation overhead. Measured on CPU, 16 to 32 steps are fastest at every size.
CHUNK_ELEMENTS = 1 << 19
MAX_CHUNK = 32

Tensor = torch.Tensor


def _check(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> None:
    """Refuse shapes the reference scan would not accept, naming the argument."""
    if u.dim() != 3 or u.shape[-1] == 0:
        raise ValueError(f"u must be (b, d, l) with l >= 1, got shape {tuple(u.shape)}")
    if delta.shape != u.shape:
        raise ValueError(f"delta must have u's shape {tuple(u.shape)}, got {tuple(delta.shape)}")
    b, d, l = u.shape
    if A.dim() != 2 or A.shape[0] != d:
        raise ValueError(f"A must be (d, n) = ({d}, n), got shape {tuple(A.shape)}")
    if A.is_complex():
        raise ValueError("complex A is not supported; Mamba uses a real, negative A = -exp(A_log)")
    n = A.shape[1]
    for name, M in (("B", B), ("C", C)):
        ok = (
            (M.dim() == 2 and M.shape == (d, n))
            or (M.dim() == 3 and M.shape == (b, n, l))
            or (M.dim() == 4 and M.shape[0] == b and M.shape[2:] == (n, l) and d % M.shape[1] == 0)
        )
        if not ok:
            raise ValueError(
                f"{name} must be (d, n) = ({d}, {n}), (b, n, l) = ({b}, {n}, {l}) or (b, g, n, l) with g "
                f"dividing {d}; got shape {tuple(M.shape)}"
            )


def _per_step(M: Tensor, d: int, l: int) -> Tensor:
    """B or C in any accepted form as (l, b or 1, d or 1, n): one broadcastable slice per step."""
    if M.dim() == 2:  # time-invariant (d, n)
        return rearrange(M, "d n -> 1 1 d n").expand(l, -1, -1, -1)
    if M.dim() == 3:  # (b, n, l), shared by all channels
        return rearrange(M, "b n l -> l b 1 n")
    return repeat(M, "b g n l -> l b (g k) n", k=d // M.shape[1])


def _loop_core(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor) -> tuple[Tensor, Tensor]:
    """h_t = exp(Delta_t A) h_{t-1} + Delta_t B_t u_t, y_t = <C_t, h_t>, one step at a time.

    u, delta (b, d, l); A (d, n); B, C in any accepted form. Returns y (b, d, l) and h_l (b, d, n).
    Iterating over ``unbind`` slices (not ``x[:, :, i]`` of a tensor that needs grad) keeps autograd's
    backward linear in l: each index would scatter into a fresh full-size gradient.
    """
    b, d, l = u.shape
    deltaA = torch.exp(einsum(delta, A, "b d l, d n -> l b d n"))
    deltaB_u = rearrange(delta * u, "b d l -> l b d 1") * _per_step(B, d, l)
    h = u.new_zeros(b, d, A.shape[1])
    ys = []
    for dA_t, dBu_t, C_t in zip(deltaA.unbind(0), deltaB_u.unbind(0), _per_step(C, d, l).unbind(0)):
        h = dA_t * h + dBu_t
        ys.append((h * C_t).sum(-1))
    return rearrange(torch.stack(ys), "l b d -> b d l"), h


def _without_autocast(fn):
    """Run a Function's forward or backward in the compute dtype even inside an autocast region."""

    @functools.wraps(fn)
    def wrapper(ctx, first: Tensor, *args):
        if not torch.amp.is_autocast_available(first.device.type):  # "meta": shape-only runs (FLOP counts)
            return fn(ctx, first, *args)
        with torch.autocast(device_type=first.device.type, enabled=False):
            return fn(ctx, first, *args)

    return wrapper


class _ChunkedScan(torch.autograd.Function):
    """The core recurrence with B, C of shape (b, n, l), processed chunk by chunk along time.

    Forward keeps the state entering every chunk; backward walks the chunks from the end, recomputes
    each chunk's states from its entering state and runs the adjoint recurrence through it.
    """

    @staticmethod
    @_without_autocast
    def forward(ctx, u, delta, A, B, C, chunk):
        b, d, l = u.shape
        n = A.shape[1]
        # time-major copies so that each chunk and each step is one contiguous slice
        u_t = rearrange(u, "b d l -> l b d").contiguous()
        delta_t = rearrange(delta, "b d l -> l b d").contiguous()
        B_t = rearrange(B, "b n l -> l b n").contiguous()
        C_t = rearrange(C, "b n l -> l b n").contiguous()
        y = u.new_empty(l, b, d)
        bufs = _Buffers(chunk, b, d, n, u)
        h = u.new_zeros(b, d, n)
        entering = []
        for start in range(0, l, chunk):
            stop = min(start + chunk, l)
            entering.append(h)
            H = bufs.states(delta_t[start:stop], u_t[start:stop], A, B_t[start:stop], h)
            h = H[-1].clone()
            torch.matmul(H, C_t[start:stop, :, :, None], out=y[start:stop, :, :, None])
        ctx.save_for_backward(u_t, delta_t, A, B_t, C_t, torch.stack(entering))
        ctx.chunk = chunk
        return rearrange(y, "l b d -> b d l"), h

    @staticmethod
    @_without_autocast
    def backward(ctx, dy, dlast):
        u_t, delta_t, A, B_t, C_t, entering = ctx.saved_tensors
        chunk = ctx.chunk
        l, b, d = u_t.shape
        n = A.shape[1]
        dy_t = rearrange(dy, "b d l -> l b d").contiguous()
        du, ddelta = torch.empty_like(u_t), torch.empty_like(delta_t)
        dB, dC = torch.empty_like(B_t), torch.empty_like(C_t)
        dA = torch.zeros_like(A)
        bufs = _Buffers(chunk, b, d, n, u_t)
        G_buf = u_t.new_empty(chunk, b, d, n)
        # gradient flowing into the last state of the current chunk from everything after it
        carry = dlast.clone() if dlast is not None else u_t.new_zeros(b, d, n)
        starts = list(range(0, l, chunk))
        for k in reversed(range(len(starts))):
            start = starts[k]
            stop = min(start + chunk, l)
            T = stop - start
            sl = slice(start, stop)
            h0 = entering[k]
            H = bufs.states(delta_t[sl], u_t[sl], A, B_t[sl], h0)
            dA_bar = bufs.dA[:T]
            # adjoint: g_t = C_t dy_t + A_bar_{t+1} g_{t+1}, the recurrence run backwards in time
            G = torch.mul(dy_t[sl, :, :, None], C_t[sl, :, None, :], out=G_buf[:T])
            G[-1] += carry
            for t in range(T - 2, -1, -1):
                G[t].addcmul_(dA_bar[t + 1], G[t + 1])
            carry = dA_bar[0] * G[0]
            # dC_t = sum_d dy_t h_t
            torch.matmul(dy_t[sl, :, None, :], H, out=dC[sl, :, None, :])
            # gradient with respect to log A_bar_t = Delta_t A: g_t * A_bar_t * h_{t-1}
            P = dA_bar.mul_(G)
            P[1:] *= H[:-1]
            P[0] *= h0
            dA += einsum(P, delta_t[sl], "t b d n, t b d -> d n")
            GB = torch.matmul(G, B_t[sl, :, :, None]).squeeze(-1)  # sum_n g_t B_t: (t, b, d)
            ddelta[sl] = (P * A).sum(-1) + GB * u_t[sl]
            du[sl] = GB * delta_t[sl]
            torch.matmul((delta_t[sl] * u_t[sl])[:, :, None, :], G, out=dB[sl, :, None, :])
        return (
            rearrange(du, "l b d -> b d l"),
            rearrange(ddelta, "l b d -> b d l"),
            dA,
            rearrange(dB, "l b n -> b n l"),
            rearrange(dC, "l b n -> b n l"),
            None,
        )


class _Buffers:
    """Reused per-chunk work space: A_bar (t, b, d, n), Delta B u (t, b, d, n) and the states."""

    def __init__(self, chunk: int, b: int, d: int, n: int, like: Tensor):
        self.dA = like.new_empty(chunk, b, d, n)
        self.dBu = like.new_empty(chunk, b, d, n)
        self.H = like.new_empty(chunk, b, d, n)

    def states(self, delta: Tensor, u: Tensor, A: Tensor, B: Tensor, h: Tensor) -> Tensor:
        """The states h_t of one chunk (t, b, d, n) from delta, u (t, b, d), B (t, b, n), h_{-1} (b, d, n).

        Also leaves A_bar_t = exp(Delta_t A) in ``self.dA``.
        """
        T = delta.shape[0]
        dA, dBu, H = self.dA[:T], self.dBu[:T], self.H[:T]
        torch.mul(delta[..., None], A, out=dA).exp_()
        torch.mul((delta * u)[..., None], B[:, :, None, :], out=dBu)
        for t in range(T):
            h = torch.addcmul(dBu[t], dA[t], h, out=H[t])
        return H


def _chunked_core(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int | None):
    """The chunked scan for B, C of shape (b, n, l); other forms go through the loop."""
    if B.dim() != 3 or C.dim() != 3:
        return _loop_core(u, delta, A, B, C)
    b, d, l = u.shape
    chunk = chunk_size or max(1, min(MAX_CHUNK, CHUNK_ELEMENTS // (b * d * A.shape[1])))
    return _ChunkedScan.apply(u, delta, A, B, C, min(chunk, l))


def _selective_scan(core, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
    """Everything around the recurrence, as the reference does it: bias, softplus, skip D, gate z."""
    _check(u, delta, A, B, C)
    dtype_in = u.dtype
    # float32 compute like the reference; float64 stays float64 so that algorithms compare exactly
    dtype = torch.promote_types(dtype_in, torch.float32)
    u, delta, A, B, C = (x.to(dtype) for x in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + rearrange(delta_bias.to(dtype), "d -> d 1")
    if delta_softplus:
        delta = F.softplus(delta)
    y, last_state = core(u, delta, A, B, C)
    out = y if D is None else y + u * rearrange(D.to(dtype), "d -> d 1")
    if z is not None:
        out = out * F.silu(z.to(dtype))
    out = out.to(dtype_in)
    return (out, last_state) if return_last_state else out


def selective_scan_loop(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
):
    """The selective scan one time step at a time; the readable reference. Arguments as `selective_scan`."""
    return _selective_scan(_loop_core, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    *,
    chunk_size: int | None = None,
):
    """Mamba's selective scan (eqs. 4-7 with input-dependent Delta, B, C), mirroring ``mamba_ssm``'s ``selective_scan_ref``.

    Args:
        u: input (b, d, l).
        delta: step sizes Delta before bias and softplus (b, d, l).
        A: state matrix diagonal (d, n), negative for a stable SSM (Mamba: A = -exp(A_log)).
        B, C: input and output projections (b, n, l); also (d, n) time-invariant or (b, g, n, l)
            shared by groups of d / g channels (these two forms run through the loop).
        D: skip connection (d,), adds D * u.
        z: gate (b, d, l); the output is multiplied by silu(z).
        delta_bias: (d,), added to delta before the softplus.
        delta_softplus: apply softplus to delta (+ delta_bias).
        return_last_state: also return the final state h_l (b, d, n).
        chunk_size: time steps per chunk of the fast path (default: 32, fewer when 32 steps of
            states would pass 2 MiB).

    Returns:
        out (b, d, l) in u's dtype, or (out, last_state) with last_state (b, d, n) in the compute dtype
        (float32, or float64 for float64 inputs).
    """
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of steps, got {chunk_size}")
    return _selective_scan(
        lambda *args: _chunked_core(*args, chunk_size),
        u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state,
    )
