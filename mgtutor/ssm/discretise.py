"""From the continuous SSM to a discrete one: discretisation rules, the convolution kernel, the recurrence.

The continuous single-input SSM (paper section 3.5, eqs. 2-3):

    h'(t) = A h(t) + B u(t),    y(t) = C h(t)

sampled with step Delta becomes (eqs. 6-7)

    h_k = A_bar h_{k-1} + B_bar u_k,    y_k = C h_k

and, when A_bar and B_bar do not change with k, equals a causal convolution (eq. 8)

    y = u * K_bar,    K_bar = (C B_bar, C A_bar B_bar, ..., C A_bar^{L-1} B_bar).

Discretisation rules (eqs. 4-5 are zero-order hold):

    zoh       A_bar = exp(Delta A)                 B_bar = (Delta A)^-1 (exp(Delta A) - I) Delta B
    bilinear  A_bar = (I - Delta/2 A)^-1 (I + Delta/2 A)   B_bar = (I - Delta/2 A)^-1 Delta B
    euler     A_bar = I + Delta A                  B_bar = Delta B
    mamba     A_bar = exp(Delta A)                 B_bar = Delta B   (Mamba's kernels)

Zero-order hold is exact when u is constant over each step; Euler and Mamba's rule are first-order
accurate in Delta, bilinear second-order.

Two layouts of A, chosen with ``diagonal``:
    diagonal=True:  A (..., n) holds the diagonal (S4D, Mamba), B and C (..., n)
    diagonal=False: A (..., n, n) is dense, B and C (..., n)
Delta is a float or a tensor broadcasting against the leading axes ``...``.
Axis names: n state size, l length, k lag of the kernel.
"""

from __future__ import annotations

import torch
from einops import einsum, rearrange

Tensor = torch.Tensor
METHODS = ("zoh", "bilinear", "euler", "mamba")


def _step(delta, A: Tensor) -> Tensor:
    """Delta as a tensor of A's dtype with a trailing axis, ready to multiply A's rows."""
    delta = torch.as_tensor(delta, dtype=A.dtype, device=A.device)
    return rearrange(delta, "... -> ... 1")


def _check(A: Tensor, B: Tensor, diagonal: bool) -> None:
    n = A.shape[-1]
    if not diagonal and (A.dim() < 2 or A.shape[-2] != n):
        raise ValueError(f"a dense A must be (..., n, n), got shape {tuple(A.shape)}; pass diagonal=True for a diagonal A")
    if B.shape[-1] != n:
        raise ValueError(f"B must end in the state size n = {n}, got shape {tuple(B.shape)}")


def discretise(A: Tensor, B: Tensor, delta, method: str = "zoh", diagonal: bool = True) -> tuple[Tensor, Tensor]:
    """(A_bar, B_bar) for step ``delta`` by ``method`` in "zoh", "bilinear", "euler", "mamba" (eqs. 4-5).

    A (..., n) if diagonal else (..., n, n); B (..., n). Returns A_bar of A's shape and B_bar (..., n).
    Dense zero-order hold uses the block-matrix exponential exp(Delta [[A, B], [0, 0]]) =
    [[A_bar, B_bar], [0, 1]], which needs no inverse of A (A may be singular).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    _check(A, B, diagonal)
    dt = _step(delta, A)
    if diagonal:
        dA = dt * A
        if method == "zoh":
            # (exp(Delta a) - 1) / a, with its limit Delta where a = 0; expm1 keeps small Delta a exact
            safe = torch.where(A == 0, torch.ones_like(A), A)
            return torch.exp(dA), torch.where(A == 0, dt, torch.expm1(dA) / safe) * B
        if method == "bilinear":
            return (1 + dA / 2) / (1 - dA / 2), dt * B / (1 - dA / 2)
        if method == "euler":
            return 1 + dA, dt * B
        return torch.exp(dA), dt * B

    n = A.shape[-1]
    eye = torch.eye(n, dtype=A.dtype, device=A.device)
    dA = rearrange(dt, "... 1 -> ... 1 1") * A
    if method == "zoh":
        lead = torch.broadcast_shapes(A.shape[:-2], B.shape[:-1], dt.shape[:-1])
        M = A.new_zeros(*lead, n + 1, n + 1)
        M[..., :n, :n] = dA
        M[..., :n, n] = dt * B
        E = torch.linalg.matrix_exp(M)
        return E[..., :n, :n], E[..., :n, n]
    if method == "bilinear":
        inv = torch.linalg.inv(eye - dA / 2)
        return inv @ (eye + dA / 2), einsum(inv, dt * B, "... i j, ... j -> ... i")
    if method == "euler":
        return eye + dA, dt * B
    return torch.linalg.matrix_exp(dA), dt * B


def kernel(A_bar: Tensor, B_bar: Tensor, C: Tensor, length: int, diagonal: bool = True) -> Tensor:
    """The SSM convolution kernel K_bar_k = C A_bar^k B_bar for k = 0 .. length - 1 (eq. 8): (..., length)."""
    _check(A_bar, B_bar, diagonal)
    if diagonal:
        # Vandermonde matrix A_bar_n^k: (..., n, k)
        powers = rearrange(A_bar, "... n -> ... n 1") ** torch.arange(length, device=A_bar.device)
        return einsum(C * B_bar, powers, "... n, ... n k -> ... k")
    taps = []
    v = B_bar  # A_bar^k B_bar, one matrix-vector product per lag
    for _ in range(length):
        taps.append(einsum(C, v, "... n, ... n -> ..."))
        v = einsum(A_bar, v, "... i j, ... j -> ... i")
    return torch.stack(taps, dim=-1)


def causal_conv(u: Tensor, K: Tensor, method: str = "fft") -> Tensor:
    """y_t = sum_{k <= t} K_k u_{t-k}: u (..., l), K (..., l) broadcasting -> (..., l).

    "fft" multiplies spectra zero-padded to 2l, so the circular convolution has no wrap-around;
    "direct" sums the shifted inputs, l multiply-adds per output.
    """
    l = u.shape[-1]
    if K.shape[-1] != l:
        raise ValueError(f"the kernel must be as long as the input ({l}), got {K.shape[-1]}")
    if method == "fft":
        spectrum = torch.fft.rfft(u, n=2 * l) * torch.fft.rfft(K, n=2 * l)
        return torch.fft.irfft(spectrum, n=2 * l)[..., :l]
    if method == "direct":
        y = torch.zeros(torch.broadcast_shapes(u.shape, K.shape), dtype=torch.promote_types(u.dtype, K.dtype), device=u.device)
        for k in range(l):
            y[..., k:] += K[..., k : k + 1] * u[..., : l - k]
        return y
    raise ValueError(f"method must be 'fft' or 'direct', got {method!r}")


def recurrence(A_bar: Tensor, B_bar: Tensor, C: Tensor, u: Tensor, diagonal: bool = True) -> Tensor:
    """h_k = A_bar h_{k-1} + B_bar u_k, y_k = C h_k from h_{-1} = 0 (eqs. 6-7): u (..., l) -> y (..., l)."""
    _check(A_bar, B_bar, diagonal)
    h = torch.zeros(torch.broadcast_shapes(B_bar.shape, u.shape[:-1] + (1,)), dtype=B_bar.dtype, device=B_bar.device)
    ys = []
    for u_k in u.unbind(-1):
        Ah = A_bar * h if diagonal else einsum(A_bar, h, "... i j, ... j -> ... i")
        h = Ah + B_bar * rearrange(u_k, "... -> ... 1")
        ys.append(einsum(C, h, "... n, ... n -> ..."))
    return torch.stack(ys, dim=-1)


def continuous_impulse_response(A: Tensor, B: Tensor, C: Tensor, times: Tensor, diagonal: bool = True) -> Tensor:
    """C exp(A t) B at the given times (l,): the continuous kernel that K_bar / Delta samples. (..., l)."""
    _check(A, B, diagonal)
    if diagonal:
        return einsum(C * B, torch.exp(einsum(A, times, "... n, l -> ... n l")), "... n, ... n l -> ... l")
    E = torch.linalg.matrix_exp(einsum(A, times, "... i j, l -> ... l i j"))
    return einsum(C, E, B, "... i, ... l i j, ... j -> ... l")
