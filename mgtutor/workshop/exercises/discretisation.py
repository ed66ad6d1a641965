"""Notebook 01's exercises: zero-order hold for a diagonal A (eqs. 4-5), the SSM kernel (eq. 8) and the
causal convolution by FFT, each graded against `mgtutor.ssm.discretise`.

Shapes: n state size, l length; ``...`` any leading axes (several SSMs side by side).
"""

from __future__ import annotations

import torch

from mgtutor.ssm import discretise as disc
from mgtutor.workshop.check import Case, Exercise, Mistake, register

# -- zero-order hold for a diagonal A ------------------------------------------------------------


def _zoh(a, b, delta):
    return disc.discretise(a, b, delta, "zoh")


def _zoh_with(exp_minus_one, limit_at_zero: bool):
    """ZOH written with a given exp(x) - 1 and with or without the a = 0 limit: the usual slips."""

    def zoh(a, b, delta):
        dA = delta * a
        B_bar = exp_minus_one(dA) / a * b
        if limit_at_zero:
            B_bar = torch.where(a == 0, delta * b, B_bar)
        return torch.exp(dA), B_bar

    return zoh


def _zoh_cases() -> list[Case]:
    a8 = -torch.arange(1.0, 9.0, dtype=torch.float64)
    b8 = torch.randn(8, dtype=torch.float64)
    return [
        Case("n = 8, Δ = 0.01", dict(a=a8, b=b8, delta=0.01)),
        Case("n = 8, Δ = 0.3", dict(a=a8, b=b8, delta=0.3)),
        Case("n = 8, Δ = 3 (a large step)", dict(a=a8, b=b8, delta=3.0)),
        Case("(d, n) = (3, 5), float32, Δ = 0.1",
             dict(a=-torch.exp(torch.randn(3, 5)), b=torch.randn(3, 5), delta=0.1)),
        Case("float32, Δ = 1e-4 (a tiny step)", dict(a=a8.float(), b=b8.float(), delta=1e-4)),
        Case("a = 0 in the first state (it never forgets), Δ = 0.5",
             dict(a=torch.tensor([0.0, -1.0, -2.0, -4.0], dtype=torch.float64), b=b8[:4], delta=0.5)),
    ]


ZOH = register(Exercise(
    name="zoh_diagonal",
    minutes=6,
    notebook="01",
    reference=_zoh,
    reference_name="mgtutor.ssm.discretise.discretise(a, b, delta, 'zoh')",
    outputs=("A_bar", "B_bar"),
    cases=_zoh_cases,
    atol=0.0,  # relative error only: B_bar is tiny for a tiny step, and that is where digits get lost
    mistakes=(
        Mistake(lambda a, b, delta: (1 + delta * a, delta * b),
                "that is Euler's rule (A_bar = 1 + Δa, B_bar = Δb): it agrees with zero-order hold only "
                "while Δ|a| is small. Eq. 4: A_bar = exp(Δa); eq. 5 for a diagonal A: "
                "B_bar = (exp(Δa) - 1) / a * b."),
        Mistake(lambda a, b, delta: (1 + delta * a, _zoh(a, b, delta)[1]),
                "your B_bar is right but your A_bar is 1 + Δa, the first two terms of exp(Δa): close for "
                "a small step, far off for a large one. Eq. 4: A_bar = exp(Δa)."),
        Mistake(lambda a, b, delta: (torch.exp(delta * a), delta * b),
                "your A_bar is right but your B_bar is Δb, Mamba's shortcut (the 'mamba' rule), not "
                "zero-order hold. Eq. 5 for a diagonal A: B_bar = (exp(Δa) - 1) / a * b."),
        Mistake(_zoh_with(lambda x: torch.exp(x) - 1, limit_at_zero=False),
                "two things. Where a = 0 you divide 0 by 0: the limit of (exp(Δa) - 1) / a as a -> 0 is "
                "Δ (use torch.where(a == 0, delta * b, ...)). And exp(x) - 1 loses digits when x is tiny "
                "(float32, Δ = 1e-4): torch.expm1(x) computes it without that loss."),
        Mistake(_zoh_with(torch.expm1, limit_at_zero=False),
                "where a = 0 you divide 0 by 0. The limit of (exp(Δa) - 1) / a as a -> 0 is Δ, so "
                "B_bar = Δb there: torch.where(a == 0, delta * b, torch.expm1(delta * a) / a * b)."),
        Mistake(_zoh_with(lambda x: torch.exp(x) - 1, limit_at_zero=True),
                "exp(x) - 1 loses digits when x is tiny (float32, Δ = 1e-4: exp(x) is 0.9999.. and the "
                "subtraction keeps only a few digits). torch.expm1(x) computes exp(x) - 1 without that loss."),
    ),
))

# -- the SSM kernel ------------------------------------------------------------------------------


def _kernel(A_bar, B_bar, c, length):
    return disc.kernel(A_bar, B_bar, c, length)


def _kernel_cases() -> list[Case]:
    n8 = torch.arange(1.0, 9.0, dtype=torch.float64)
    return [
        Case("n = 8, length 50", dict(A_bar=torch.exp(-0.1 * n8), B_bar=torch.randn(8, dtype=torch.float64),
                                      c=torch.randn(8, dtype=torch.float64), length=50)),
        Case("n = 1, length 1 (one tap)", dict(A_bar=torch.tensor([0.5], dtype=torch.float64),
                                               B_bar=torch.tensor([2.0], dtype=torch.float64),
                                               c=torch.tensor([3.0], dtype=torch.float64), length=1)),
        Case("n = 4, length 17, float32", dict(A_bar=torch.rand(4), B_bar=torch.randn(4), c=torch.randn(4), length=17)),
    ]


KERNEL = register(Exercise(
    name="ssm_kernel",
    minutes=4,
    notebook="01",
    reference=_kernel,
    reference_name="mgtutor.ssm.discretise.kernel",
    outputs=("K",),
    cases=_kernel_cases,
    mistakes=(
        Mistake(lambda A_bar, B_bar, c, length: (c * B_bar) @ (A_bar[:, None] ** torch.arange(1, length + 1)),
                "your kernel starts one step late: K_0 = C B_bar (A_bar to the power 0: the input of this very "
                "step), K_1 = C A_bar B_bar, ... The powers run 0 .. length - 1."),
        Mistake(lambda A_bar, B_bar, c, length: _kernel(A_bar, B_bar, c, length).flip(-1),
                "your kernel is reversed in time: K_k weighs the input k steps back, so K_0 = C B_bar comes first "
                "and the taps decay as k grows."),
    ),
))

# -- the causal convolution by FFT -----------------------------------------------------------------


def _conv(x, K):
    return disc.causal_conv(x, K)


def _circular(x, K):
    l = x.shape[-1]
    return torch.fft.irfft(torch.fft.rfft(x) * torch.fft.rfft(K), n=l)


def _conv_cases() -> list[Case]:
    def pair(l, dtype=torch.float64):
        K = torch.exp(-0.05 * torch.arange(l, dtype=dtype)) * torch.randn(l, dtype=dtype)
        return dict(x=torch.randn(l, dtype=dtype), K=K)

    return [
        Case("l = 64", pair(64)),
        Case("l = 7 (odd)", pair(7)),
        Case("l = 1", pair(1)),
        Case("l = 100, float32", pair(100, torch.float32)),
    ]


CONV = register(Exercise(
    name="fft_causal_conv",
    minutes=5,
    notebook="01",
    reference=_conv,
    reference_name="mgtutor.ssm.discretise.causal_conv",
    outputs=("y",),
    cases=_conv_cases,
    mistakes=(
        Mistake(_circular,
                "your output wraps around: an FFT of length l computes a circular convolution, where the last "
                "inputs leak into the first outputs. Zero-pad both to 2l (torch.fft.rfft(x, n=2 * l)), multiply, "
                "transform back with n=2 * l and keep the first l outputs."),
        Mistake(lambda x, K: torch.fft.irfft(torch.fft.rfft(x, n=2 * x.shape[-1]) * torch.fft.rfft(K, n=2 * x.shape[-1]),
                                             n=2 * x.shape[-1])[x.shape[-1]:],
                "you kept the last l of the 2l outputs; the causal convolution is the first l (y_k for k = 0 .. l - 1)."),
    ),
))
