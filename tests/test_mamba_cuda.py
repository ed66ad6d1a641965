"""mgtutor's scan and block against mamba_ssm's fused CUDA kernels (run wherever CUDA and mamba_ssm are).

Tolerances are those of mamba_ssm's own kernel tests: float32 rtol 6e-4, atol 2e-3; bfloat16 rtol 3e-2,
atol 5e-2 (gradients get the same multiples of them as there). The CPU tests in test_ssm_scan.py and
test_mamba.py check the same logic against the sequential loop.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from mgtutor.ssm import Mamba, selective_scan
from mgtutor.ssm.benchmark import scan_inputs

TOLERANCES = {torch.float32: (6e-4, 2e-3), torch.bfloat16: (3e-2, 5e-2)}


def fused():
    """mamba_ssm's scan interface; the test is skipped where mamba_ssm or its compiled kernels are missing
    (mamba-ssm after 2.3.2.post1 imports without them)."""
    from mgtutor.ssm.mamba import _fused_available

    if not _fused_available():
        pytest.skip("mamba_ssm or its compiled kernels (selective_scan_cuda) are not installed")
    return importlib.import_module("mamba_ssm.ops.selective_scan_interface")


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("l", [7, 128, 1000])
def test_selective_scan_matches_fused_kernel(dtype, l):
    selective_scan_fn = fused().selective_scan_fn
    rtol, atol = TOLERANCES[dtype]
    torch.manual_seed(0)
    inputs = scan_inputs(2, 64, 16, l)  # A = -(1..n), delta through softplus, as in a Mamba block
    # as in mamba_ssm's tests: u, B, C, z in the input dtype; A, D, delta, delta_bias in float32
    for key in ("u", "B", "C", "z"):
        inputs[key] = inputs[key].to(dtype)
    inputs = {k: v.cuda().requires_grad_() for k, v in inputs.items()}
    ours_in = {k: v.detach().clone().requires_grad_() for k, v in inputs.items()}

    out, last = selective_scan_fn(**inputs, delta_softplus=True, return_last_state=True)
    ours, ours_last = selective_scan(**ours_in, delta_softplus=True, return_last_state=True)
    assert ours.dtype == out.dtype == dtype
    torch.testing.assert_close(ours, out, rtol=rtol, atol=atol)
    torch.testing.assert_close(ours_last, last.float(), rtol=rtol, atol=atol)

    grad = torch.randn_like(out)
    out.backward(grad)
    ours.backward(grad)
    scale = {"u": 2, "delta": 10, "A": 10, "B": 10, "C": 5, "D": 5, "z": 2, "delta_bias": 10}
    for key, k in scale.items():
        torch.testing.assert_close(
            ours_in[key].grad, inputs[key].grad, rtol=rtol * k, atol=atol * k,
            msg=lambda m: f"gradient of {key}: {m}",
        )


@pytest.mark.cuda
def test_block_loads_into_mamba_ssm_and_agrees():
    fused()
    from mamba_ssm import Mamba as PublicMamba

    rtol, atol = TOLERANCES[torch.float32]
    torch.manual_seed(0)
    ours = Mamba(64, d_state=16).cuda()
    public = PublicMamba(d_model=64, d_state=16, d_conv=4, expand=2).cuda()
    assert {k: v.shape for k, v in public.state_dict().items()} == {k: v.shape for k, v in ours.state_dict().items()}
    public.load_state_dict(ours.state_dict())
    x = torch.randn(2, 100, 64, device="cuda")
    torch.testing.assert_close(ours(x), public(x), rtol=rtol, atol=atol)
    # and back: the public block's weights run in ours
    ours_back = Mamba(64, d_state=16).cuda()
    ours_back.load_state_dict(public.state_dict())
    torch.testing.assert_close(ours_back(x), public(x), rtol=rtol, atol=atol)


@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_backends_agree(dtype):
    fused()
    rtol, atol = TOLERANCES[dtype]
    torch.manual_seed(0)
    block = Mamba(64, backend="torch").cuda()
    x = torch.randn(2, 77, 64, device="cuda")
    with torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
        reference = block(x)
        for backend in ("mamba_ssm", "auto"):
            other = Mamba(64, backend=backend).cuda()
            other.load_state_dict(block.state_dict())
            torch.testing.assert_close(other(x), reference, rtol=rtol, atol=atol)


@pytest.mark.cuda
def test_step_on_cuda_equals_forward():
    torch.manual_seed(0)
    block = Mamba(32, d_state=8).cuda()
    x = torch.randn(2, 9, 32, device="cuda")
    full = block(x)
    conv_state, ssm_state = block.allocate_inference_state(2)
    steps = torch.stack([block.step(x[:, t], conv_state, ssm_state)[0] for t in range(9)], dim=1)
    torch.testing.assert_close(steps, full, rtol=1e-4, atol=1e-5)
