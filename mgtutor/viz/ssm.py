"""Pictures of state-space models: impulse responses and kernels of a discretised SSM (notebook 01).

`impulse_response_figure(delta)` draws, for one step size Delta, the continuous impulse response
C exp(A t) B of a small SSM next to the kernels K_bar / Delta that each discretisation rule gives
(paper eqs. 4-5 and 8), and where the eigenvalues of A_bar lie against the unit circle. It is what the
notebook's Delta slider calls.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
import torch

from mgtutor.ssm.discretise import METHODS, continuous_impulse_response, discretise, kernel

STYLES = {
    "zoh": dict(color="tab:blue", marker="o", label="zero-order hold (eqs. 4-5)"),
    "mamba": dict(color="tab:green", marker="^", label="Mamba: exp(ΔA), ΔB"),
    "bilinear": dict(color="tab:purple", marker="s", label="bilinear"),
    "euler": dict(color="tab:red", marker="x", label="Euler: I + ΔA, ΔB"),
}


def oscillator_ssm(period: float = 2.0, damping: float = 0.15) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A damped oscillator as a 2-state SSM (float64): h = (position, velocity), input pushes velocity.

    A = [[0, 1], [-w^2, -2 zeta w]], B = (0, 1), C = (1, 0); its impulse response rings and decays,
    which shows clearly when a discretisation loses the phase or the stability.
    """
    w = 2 * math.pi / period
    A = torch.tensor([[0.0, 1.0], [-(w**2), -2 * damping * w]], dtype=torch.float64)
    return A, torch.tensor([0.0, 1.0], dtype=torch.float64), torch.tensor([1.0, 0.0], dtype=torch.float64)


def impulse_response_figure(
    delta: float,
    horizon: float = 6.0,
    methods: tuple[str, ...] = METHODS,
    ssm: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    figsize: tuple[float, float] = (11.0, 4.0),
):
    """A figure for step size ``delta``: kernels K_bar / Delta of each rule against C exp(A t) B (left),
    eigenvalues of A_bar against the unit circle, where |lambda| > 1 means the recurrence blows up (right).

    ``ssm`` is (A dense (n, n), B (n,), C (n,)); default `oscillator_ssm()`. Returns the Figure.
    """
    if delta <= 0:
        raise ValueError(f"delta must be positive, got {delta}")
    A, B, C = ssm if ssm is not None else oscillator_ssm()
    steps = max(1, int(horizon / delta))
    fine = torch.linspace(0, horizon, 600, dtype=A.dtype)
    exact = continuous_impulse_response(A, B, C, fine, diagonal=False)
    scale = float(exact.abs().max())

    fig, (ax, ax_eig) = plt.subplots(1, 2, figsize=figsize, gridspec_kw={"width_ratios": [2.3, 1]})
    ax.plot(fine, exact, color="black", lw=2, label="continuous  C exp(At) B")
    circle = np.linspace(0, 2 * np.pi, 200)
    ax_eig.plot(np.cos(circle), np.sin(circle), color="grey", lw=1)
    reach = 1.3
    for method in methods:
        A_bar, B_bar = discretise(A, B, delta, method, diagonal=False)
        K = kernel(A_bar, B_bar, C, steps, diagonal=False) / delta
        style = STYLES[method]
        times = torch.arange(steps, dtype=A.dtype) * delta
        ax.plot(times, K.clamp(-3 * scale, 3 * scale), lw=1, ms=4 if steps <= 80 else 0, **style)
        eig = torch.linalg.eigvals(A_bar)
        ax_eig.scatter(eig.real, eig.imag, color=style["color"], marker=style["marker"], s=40)
        reach = max(reach, 1.15 * float(eig.abs().max()))
    ax.set_ylim(-1.6 * scale, 1.6 * scale)
    ax.set_xlim(0, horizon)
    ax.set_xlabel("time t (the k-th tap sits at t = k Δ)")
    ax.set_ylabel("K̄_k / Δ")
    ax.set_title(f"impulse response, Δ = {delta:.3g} ({steps} steps)")
    ax.legend(loc="upper right", fontsize=8)
    ax_eig.set_xlim(-reach, reach)
    ax_eig.set_ylim(-reach, reach)
    ax_eig.set_aspect("equal")
    ax_eig.axhline(0, color="grey", lw=0.5)
    ax_eig.axvline(0, color="grey", lw=0.5)
    ax_eig.set_title("eigenvalues of Ā (unit circle)")
    fig.tight_layout()
    return fig


def show_impulse_responses(delta: float) -> None:
    """Draw `impulse_response_figure(delta)` into the current output; the notebook's slider calls this."""
    impulse_response_figure(delta)
    plt.show()
