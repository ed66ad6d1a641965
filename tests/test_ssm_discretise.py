"""Discretisation rules against SciPy and theory; convolution == recurrence for a time-invariant SSM."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal
import torch

from mgtutor.ssm import discretise as disc

F64 = torch.float64


def diagonal_ssm(leading=(), n=4):
    A = -torch.empty(*leading, n, dtype=F64).uniform_(0.5, 3.0)
    return A, torch.randn(*leading, n, dtype=F64), torch.randn(*leading, n, dtype=F64)


def dense_ssm(n=4):
    # a stable, non-symmetric, non-diagonal A
    A = torch.randn(n, n, dtype=F64) / math.sqrt(n) - 2 * torch.eye(n, dtype=F64)
    return A, torch.randn(n, dtype=F64), torch.randn(n, dtype=F64)


@pytest.mark.parametrize("method", ["zoh", "bilinear", "euler"])
def test_dense_rules_match_scipy(method):
    A, B, C = dense_ssm()
    A_bar, B_bar = disc.discretise(A, B, 0.13, method, diagonal=False)
    system = (A.numpy(), B.numpy()[:, None], C.numpy()[None], np.zeros((1, 1)))
    ad, bd, *_ = scipy.signal.cont2discrete(system, 0.13, method=method)
    np.testing.assert_allclose(A_bar.numpy(), ad, atol=1e-12)
    np.testing.assert_allclose(B_bar.numpy(), bd[:, 0], atol=1e-12)


def test_mamba_rule_is_zoh_for_A_with_euler_for_B():
    A, B, _ = dense_ssm()
    A_bar, B_bar = disc.discretise(A, B, 0.2, "mamba", diagonal=False)
    torch.testing.assert_close(A_bar, disc.discretise(A, B, 0.2, "zoh", diagonal=False)[0])
    torch.testing.assert_close(B_bar, disc.discretise(A, B, 0.2, "euler", diagonal=False)[1])


@pytest.mark.parametrize("method", disc.METHODS)
def test_diagonal_equals_dense_with_diagonal_A(method):
    A, B, _ = diagonal_ssm((3,))
    delta = torch.tensor([0.05, 0.3, 1.0], dtype=F64)
    A_bar, B_bar = disc.discretise(A, B, delta, method)
    A_bar_dense, B_bar_dense = disc.discretise(torch.diag_embed(A), B, delta, method, diagonal=False)
    torch.testing.assert_close(torch.diag_embed(A_bar), A_bar_dense)
    torch.testing.assert_close(B_bar, B_bar_dense)


def test_zoh_of_a_zero_eigenvalue_is_an_integrator():
    A = torch.tensor([0.0, -1.0], dtype=F64)
    A_bar, B_bar = disc.discretise(A, torch.ones(2, dtype=F64), 0.5)
    torch.testing.assert_close(A_bar, torch.tensor([1.0, math.exp(-0.5)], dtype=F64))
    torch.testing.assert_close(B_bar, torch.tensor([0.5, 1 - math.exp(-0.5)], dtype=F64))
    # the block-matrix exponential needs no inverse either
    _, B_bar_dense = disc.discretise(torch.diag(A), torch.ones(2, dtype=F64), 0.5, diagonal=False)
    torch.testing.assert_close(B_bar_dense, B_bar)


@pytest.mark.parametrize("method", disc.METHODS)
@pytest.mark.parametrize("diagonal", [True, False])
def test_convolution_equals_recurrence(method, diagonal):
    A, B, C = diagonal_ssm((2,), n=5) if diagonal else dense_ssm(5)
    A_bar, B_bar = disc.discretise(A, B, 0.1, method, diagonal=diagonal)
    u = torch.randn(2, 37, dtype=F64)
    K = disc.kernel(A_bar, B_bar, C, 37, diagonal=diagonal)
    y = disc.recurrence(A_bar, B_bar, C, u, diagonal=diagonal)
    torch.testing.assert_close(disc.causal_conv(u, K), y)
    torch.testing.assert_close(disc.causal_conv(u, K, "direct"), y)


def test_kernel_samples_the_continuous_impulse_response():
    """With zero-order hold, K_bar_k ~ Delta C exp(A k Delta) B for small Delta."""
    A, B, C = diagonal_ssm()
    delta = 1e-3
    A_bar, B_bar = disc.discretise(A, B, delta)
    K = disc.kernel(A_bar, B_bar, C, 500)
    continuous = disc.continuous_impulse_response(A, B, C, torch.arange(500, dtype=F64) * delta)
    torch.testing.assert_close(K / delta, continuous, rtol=0, atol=1e-2 * continuous.abs().max().item())


def step_response_error(method: str, delta: float, A, B, C, horizon: float = 1.0) -> float:
    """|y_k - y(horizon)| for the unit step input, k = horizon / Delta steps."""
    steps = round(horizon / delta)
    A_bar, B_bar = disc.discretise(A, B, delta, method)
    y = disc.recurrence(A_bar, B_bar, C, torch.ones(steps, dtype=F64))[-1]
    exact = (C * torch.expm1(A * horizon) / A * B).sum()  # y(t) = C A^-1 (e^{At} - I) B
    return abs((y - exact).item())


@pytest.mark.parametrize("method, order", [("euler", 1), ("mamba", 1), ("bilinear", 2)])
def test_error_order_as_delta_shrinks(method, order):
    """Halving Delta halves Euler's and Mamba's error (first order) and quarters bilinear's (second)."""
    A, B, C = diagonal_ssm()
    errors = [step_response_error(method, delta, A, B, C) for delta in (0.01, 0.005, 0.0025)]
    for coarse, fine in zip(errors, errors[1:]):
        assert coarse / fine == pytest.approx(2**order, rel=0.1)
    # zero-order hold is exact for a piecewise-constant input at every step size
    assert step_response_error("zoh", 0.01, A, B, C) < 1e-12
    assert step_response_error("zoh", 0.25, A, B, C) < 1e-12


def test_bad_arguments():
    A, B, _ = diagonal_ssm()
    with pytest.raises(ValueError, match="method"):
        disc.discretise(A, B, 0.1, "rk4")
    with pytest.raises(ValueError, match="dense A"):
        disc.discretise(A, B, 0.1, diagonal=False)
    with pytest.raises(ValueError, match="state size"):
        disc.discretise(A, B[:-1], 0.1)
    with pytest.raises(ValueError, match="as long as"):
        disc.causal_conv(torch.ones(5), torch.ones(4))
