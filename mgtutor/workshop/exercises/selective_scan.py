"""Notebook 02's exercises: the recurrence of the sequential scan (eqs. 6-7 with input-dependent
parameters) and the reverse recurrence of its backward pass, graded against `mgtutor.ssm.selective_scan`
and autograd through `mgtutor.ssm.selective_scan_loop`.

Shapes (the public reference's layout): u, delta, z (b, d, l); A (d, n); B, C (b, n, l); D, delta_bias (d,).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import einsum, rearrange

from mgtutor.ssm import selective_scan, selective_scan_loop
from mgtutor.ssm.benchmark import scan_inputs
from mgtutor.workshop.check import Case, Exercise, Mistake, register

# -- the sequential scan's recurrence --------------------------------------------------------------


def _scan(u, delta, A, B, C, D, z, delta_bias):
    return selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus=True)


def _sequential(step):
    """The notebook's sequential scan with the loop body ``step(h, dA_t, dBu_t, C_t) -> (h, y_t)``."""

    def scan(u, delta, A, B, C, D, z, delta_bias):
        delta = F.softplus(delta + rearrange(delta_bias, "d -> d 1"))
        deltaA = torch.exp(einsum(delta, A, "b d l, d n -> l b d n"))
        deltaB_u = einsum(delta, B, u, "b d l, b n l, b d l -> l b d n")
        h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
        ys = []
        for dA_t, dBu_t, C_t in zip(deltaA.unbind(0), deltaB_u.unbind(0), C.unbind(2)):
            h, y_t = step(h, dA_t, dBu_t, C_t)
            ys.append(y_t)
        y = torch.stack(ys, dim=2)
        return (y + u * rearrange(D, "d -> d 1")) * F.silu(z)

    return scan


def _read(h, C_t):
    return einsum(h, C_t, "b d n, b n -> b d")


def _read_before_update(h, dA_t, dBu_t, C_t):
    return dA_t * h + dBu_t, _read(h, C_t)


def _scan_cases() -> list[Case]:
    def inputs(b, d, n, l, seed, dtype=torch.float64):
        return scan_inputs(b, d, n, l, dtype=dtype, seed=seed)

    return [
        Case("b = 2, d = 4, n = 3, l = 13", inputs(2, 4, 3, 13, seed=1)),
        Case("l = 1 (a single step), n = 16", inputs(1, 3, 16, 1, seed=2)),
        Case("b = 2, d = 8, n = 4, l = 40, float32", inputs(2, 8, 4, 40, seed=3, dtype=torch.float32)),
    ]


SEQUENTIAL_SCAN = register(Exercise(
    name="sequential_scan",
    minutes=5,
    notebook="02",
    reference=_scan,
    reference_name="mgtutor.ssm.selective_scan(..., delta_softplus=True)",
    outputs=("y",),
    cases=_scan_cases,
    rtol=1e-4, atol=1e-5,  # float32 sums in another order than the chunked scan's
    mistakes=(
        Mistake(_sequential(lambda h, dA_t, dBu_t, C_t: (h + dBu_t, _read(h + dBu_t, C_t))),
                "your state never forgets: each step multiplies the previous state by A_bar_t = exp(Δ_t A) "
                "before adding the new input, h_t = A_bar_t * h_{t-1} + Δ_t B_t u_t (eq. 6)."),
        Mistake(_sequential(_read_before_update),
                "your y_t reads h_{t-1}, the state before step t's input: update h first, then read "
                "y_t = <C_t, h_t> (eq. 7), so that y_t already sees u_t."),
        Mistake(_sequential(lambda h, dA_t, dBu_t, C_t: (dA_t * (h + dBu_t), _read(dA_t * (h + dBu_t), C_t))),
                "you decay the new input too: only the previous state is multiplied by A_bar_t; "
                "h_t = A_bar_t * h_{t-1} + Δ_t B_t u_t."),
    ),
))

# -- the backward pass's reverse recurrence ----------------------------------------------------------


def entering_states(u, delta, A, B, chunk):
    """The state entering each chunk of ``chunk`` steps, (chunks, b, d, n), as the chunked forward keeps them
    (delta already positive)."""
    dA = torch.exp(einsum(delta, A, "b d l, d n -> l b d n"))
    dBu = einsum(delta * u, B, "b d l, b n l -> l b d n")
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    entering = []
    for t in range(u.shape[-1]):
        if t % chunk == 0:
            entering.append(h)
        h = dA[t] * h + dBu[t]
    return torch.stack(entering)


def _autograd(u, delta, A, B, C, entering, dy, chunk):
    leaves = {k: v.detach().requires_grad_() for k, v in dict(u=u, delta=delta, A=A, B=B, C=C).items()}
    grads = torch.autograd.grad(selective_scan_loop(**leaves), list(leaves.values()), dy)
    return dict(zip(leaves, grads))


def _by_hand(carry):
    """The gradients from g, where ``carry(Cdy_t, dA_t, g_next) -> (g_t, g_next)`` is one reverse step
    (the notebook's: g_t = C_t dy_t + g_next, then g_next = A_bar_t g_t for the step before)."""

    def backward(u, delta, A, B, C, entering, dy, chunk):
        dA = torch.exp(einsum(delta, A, "b d l, d n -> l b d n"))
        dBu = einsum(delta * u, B, "b d l, b n l -> l b d n")
        h, states = torch.zeros_like(entering[0]), []
        for dA_t, dBu_t in zip(dA, dBu):
            h = dA_t * h + dBu_t
            states.append(h)
        states = torch.stack(states)
        previous = torch.cat([torch.zeros_like(states[:1]), states[:-1]])
        Cdy = einsum(C, dy, "b n l, b d l -> l b d n")
        g, g_next = [], torch.zeros_like(states[0])
        for t in reversed(range(states.shape[0])):
            g_t, g_next = carry(Cdy[t], dA[t], g_next)
            g.append(g_t)
        g = torch.stack(g[::-1])
        P = g * dA * previous
        gB = einsum(g, B, "l b d n, b n l -> b d l")
        return dict(
            u=gB * delta,
            delta=einsum(P, A, "l b d n, d n -> b d l") + gB * u,
            A=einsum(P, delta, "l b d n, b d l -> d n"),
            B=einsum(g, delta * u, "l b d n, b d l -> b n l"),
            C=einsum(dy, states, "b d l, l b d n -> b n l"),
        )

    return backward


def _backward_cases() -> list[Case]:
    def inputs(b, d, n, l, chunk, seed, dtype=torch.float64):
        x = scan_inputs(b, d, n, l, dtype=dtype, seed=seed)
        core = dict(u=x["u"], delta=F.softplus(x["delta"] + x["delta_bias"][:, None]), A=x["A"], B=x["B"], C=x["C"])
        dy = torch.randn(b, d, l, dtype=dtype)
        return dict(**core, entering=entering_states(core["u"], core["delta"], core["A"], core["B"], chunk), dy=dy, chunk=chunk)

    return [
        Case("b = 2, d = 3, n = 4, l = 37 in chunks of 8", inputs(2, 3, 4, 37, 8, seed=1)),
        Case("l = 5, one chunk of 16", inputs(1, 2, 3, 5, 16, seed=2)),
        Case("l = 32 in chunks of 8 (no partial chunk)", inputs(2, 2, 2, 32, 8, seed=3)),
        Case("float32, l = 20 in chunks of 16", inputs(1, 4, 4, 20, 16, seed=4, dtype=torch.float32)),
    ]


SCAN_BACKWARD = register(Exercise(
    name="chunked_scan_backward",
    minutes=6,
    notebook="02",
    reference=_autograd,
    reference_name="autograd through mgtutor.ssm.selective_scan_loop",
    outputs=("u", "delta", "A", "B", "C"),
    cases=_backward_cases,
    rtol=1e-4, atol=1e-5,  # float32 sums in another order than autograd's
    mistakes=(
        Mistake(_by_hand(lambda Cdy_t, dA_t, g_next: (Cdy_t + g_next, Cdy_t + g_next)),
                "your gradient never decays on its way back: h_t reaches h_{t+1} through A_bar_{t+1}, so "
                "g_{t+1} comes back multiplied by it, g_t = C_t dy_t + A_bar_{t+1} g_{t+1}. "
                "Pass g_next = dA[t] * g_t to the step before."),
        Mistake(_by_hand(lambda Cdy_t, dA_t, g_next: (Cdy_t + dA_t * g_next, Cdy_t + dA_t * g_next)),
                "you multiply g_{t+1} by A_bar_t, this step's decay; the factor is A_bar_{t+1}, the decay of the "
                "step that reads h_t. Add g_next as it comes (g_t = C_t dy_t + g_next) and then hand "
                "g_next = dA[t] * g_t to step t - 1."),
    ),
))
