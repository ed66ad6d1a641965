"""The chunked selective scan equals the step-by-step loop, values and gradients, in float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import repeat

from mgtutor.ssm import selective_scan, selective_scan_loop
from mgtutor.ssm.scan import _loop_core

F64 = torch.float64


def realistic_inputs(b: int, d: int, n: int, l: int, dtype=F64, grad: bool = True) -> dict[str, torch.Tensor]:
    """Inputs as a trained Mamba block produces them: A = -exp(A_log), Delta through softplus."""
    A_log = torch.log(repeat(torch.arange(1, n + 1, dtype=dtype), "n -> d n", d=d)) + 0.1 * torch.randn(d, n, dtype=dtype)
    dt = torch.exp(torch.rand(d, dtype=dtype) * (torch.log(torch.tensor(0.1)) - torch.log(torch.tensor(1e-3))) + torch.log(torch.tensor(1e-3)))
    inputs = {
        "u": torch.randn(b, d, l, dtype=dtype),
        "delta": 0.5 * torch.randn(b, d, l, dtype=dtype),
        "A": -torch.exp(A_log),
        "B": torch.randn(b, n, l, dtype=dtype),
        "C": torch.randn(b, n, l, dtype=dtype),
        "D": torch.randn(d, dtype=dtype),
        "z": torch.randn(b, d, l, dtype=dtype),
        "delta_bias": dt + torch.log(-torch.expm1(-dt)),  # inverse softplus, as Mamba initialises it
    }
    return {k: v.requires_grad_(grad) for k, v in inputs.items()}


def run_both(inputs, chunk_size=None, **flags):
    fast = selective_scan(**inputs, **flags, chunk_size=chunk_size)
    loop = selective_scan_loop(**inputs, **flags)
    return fast, loop


@pytest.mark.parametrize("l", [1, 2, 7, 48, 129])
@pytest.mark.parametrize("chunk_size", [None, 1, 5, 16])
def test_fast_equals_loop_values_and_gradients(l, chunk_size):
    inputs = realistic_inputs(2, 6, 4, l)
    (out, last), (ref, ref_last) = run_both(inputs, chunk_size, delta_softplus=True, return_last_state=True)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(last, ref_last)
    dout, dlast = torch.randn_like(out), torch.randn_like(last)
    names = list(inputs)
    grads = torch.autograd.grad((out * dout).sum() + (last * dlast).sum(), [inputs[k] for k in names])
    ref_grads = torch.autograd.grad((ref * dout).sum() + (ref_last * dlast).sum(), [inputs[k] for k in names])
    for name, g, r in zip(names, grads, ref_grads):
        torch.testing.assert_close(g, r, msg=lambda m: f"gradient of {name}: {m}")


@pytest.mark.parametrize("drop", [("D",), ("z",), ("delta_bias",), ("D", "z", "delta_bias")])
@pytest.mark.parametrize("softplus", [True, False])
def test_optional_arguments(drop, softplus):
    inputs = realistic_inputs(1, 5, 3, 33)
    for key in drop:
        del inputs[key]
    if not softplus:  # then delta (+ delta_bias) must already be positive
        inputs["delta"] = F.softplus(inputs["delta"].detach()).requires_grad_()
        if "delta_bias" in inputs:
            inputs["delta_bias"] = torch.rand(5, dtype=F64, requires_grad=True)
    out, ref = run_both(inputs, chunk_size=8, delta_softplus=softplus)
    torch.testing.assert_close(out, ref)
    grads = torch.autograd.grad(out.square().sum(), list(inputs.values()))
    ref_grads = torch.autograd.grad(ref.square().sum(), list(inputs.values()))
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r)


def test_loop_is_the_recurrence():
    """The loop against the equations written out for one channel: h_t = e^{Delta A} h + Delta B u."""
    inputs = realistic_inputs(1, 1, 2, 4, grad=False)
    u, delta, A, B, C = (inputs[k][0] if k != "A" else inputs[k] for k in ("u", "delta", "A", "B", "C"))
    h = torch.zeros(2, dtype=F64)
    expected = []
    for t in range(4):
        h = torch.exp(delta[0, t] * A[0]) * h + delta[0, t] * B[:, t] * u[0, t]
        expected.append((C[:, t] * h).sum())
    out = selective_scan_loop(inputs["u"], inputs["delta"], A, inputs["B"], inputs["C"])
    torch.testing.assert_close(out[0, 0], torch.stack(expected))


def test_large_steps_stay_finite():
    """Delta up to a few units and A down to -16 decay by e^-60 within a step: no overflow, no NaN."""
    inputs = realistic_inputs(1, 4, 16, 40, dtype=torch.float32, grad=False)
    inputs["delta"] = inputs["delta"] * 8
    out, ref = run_both(inputs, delta_softplus=True)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_other_forms_of_B_and_C():
    """Time-invariant (d, n) and grouped (b, g, n, l) B, C, as the reference accepts them."""
    b, d, n, l = 2, 6, 3, 11
    inputs = realistic_inputs(b, d, n, l, grad=False)
    B_const, C_const = torch.randn(d, n, dtype=F64), torch.randn(d, n, dtype=F64)
    B_group, C_group = torch.randn(b, 3, n, l, dtype=F64), torch.randn(b, 3, n, l, dtype=F64)
    # constant B, C == the same matrix repeated over time, one per channel: run channel by channel
    out = selective_scan(inputs["u"], inputs["delta"], inputs["A"], B_const, C_const)
    for c in range(d):
        expected = _loop_core(
            inputs["u"][:, c : c + 1], inputs["delta"][:, c : c + 1], inputs["A"][c : c + 1],
            repeat(B_const[c], "n -> b n l", b=b, l=l), repeat(C_const[c], "n -> b n l", b=b, l=l),
        )[0]
        torch.testing.assert_close(out[:, c : c + 1], expected)
    # grouped: channels 0-1 use group 0, 2-3 group 1, 4-5 group 2
    out = selective_scan(inputs["u"], inputs["delta"], inputs["A"], B_group, C_group)
    for c in range(d):
        g = c // 2
        expected = selective_scan(
            inputs["u"][:, c : c + 1], inputs["delta"][:, c : c + 1], inputs["A"][c : c + 1],
            B_group[:, g], C_group[:, g],
        )
        torch.testing.assert_close(out[:, c : c + 1], expected)


def test_long_sequence():
    inputs = realistic_inputs(1, 3, 4, 1000)
    (out, last), (ref, ref_last) = run_both(inputs, delta_softplus=True, return_last_state=True)
    torch.testing.assert_close(out, ref)
    torch.testing.assert_close(last, ref_last)
    grads = torch.autograd.grad(out.sum(), [inputs["delta"], inputs["A"]])
    ref_grads = torch.autograd.grad(ref.sum(), [inputs["delta"], inputs["A"]])
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r)


def test_autocast_keeps_the_scan_in_float32():
    inputs = realistic_inputs(2, 8, 4, 20, dtype=torch.float32)
    ref = selective_scan(**inputs, delta_softplus=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = selective_scan(**inputs, delta_softplus=True)
        grads = torch.autograd.grad(out.sum(), [inputs["u"], inputs["B"]])
    ref_grads = torch.autograd.grad(ref.sum(), [inputs["u"], inputs["B"]])
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r)


def test_dtypes_follow_the_reference():
    inputs = realistic_inputs(1, 4, 2, 9, dtype=torch.float32, grad=False)
    half = {k: v.to(torch.bfloat16) for k, v in inputs.items()}
    out, last = selective_scan(**half, delta_softplus=True, return_last_state=True)
    assert out.dtype == torch.bfloat16 and last.dtype == torch.float32
    ref = selective_scan(**{k: v.float() for k, v in half.items()}, delta_softplus=True)
    torch.testing.assert_close(out.float(), ref, rtol=3e-2, atol=5e-2)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda i: i.update(u=i["u"][0]), "u must be"),
        (lambda i: i.update(u=i["u"][..., :0], delta=i["delta"][..., :0]), "l >= 1"),
        (lambda i: i.update(delta=i["delta"][..., :-1]), "delta must"),
        (lambda i: i.update(A=i["A"][:-1]), "A must"),
        (lambda i: i.update(B=i["B"][..., :-1]), "B must"),
        (lambda i: i.update(C=i["C"][:, :-1]), "C must"),
    ],
)
def test_bad_shapes_are_refused(change, message):
    inputs = realistic_inputs(2, 4, 3, 5, grad=False)
    change(inputs)
    with pytest.raises(ValueError, match=message):
        selective_scan(**inputs)


def test_bad_chunk_size_is_refused():
    with pytest.raises(ValueError, match="chunk_size"):
        selective_scan(**realistic_inputs(1, 2, 2, 5, grad=False), chunk_size=0)
