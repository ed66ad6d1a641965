"""The Mamba block: shapes, causality, recurrent inference, state-dict layout and initialisation."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

from mgtutor.ssm import Mamba

F64 = torch.float64

EXPECTED_512 = {
    "in_proj.weight": (2048, 512),
    "conv1d.weight": (1024, 1, 4),
    "conv1d.bias": (1024,),
    "x_proj.weight": (64, 1024),
    "dt_proj.weight": (1024, 32),
    "dt_proj.bias": (1024,),
    "A_log": (1024, 16),
    "D": (1024,),
    "out_proj.weight": (512, 1024),
}


def small_block(**kwargs) -> Mamba:
    return Mamba(16, d_state=4, **kwargs).to(F64)


def test_forward_shape_and_dtype():
    block = Mamba(32, d_state=8)
    x = torch.randn(3, 17, 32)
    y = block(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    y.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in block.parameters())


def test_state_dict_names_shapes_and_parameter_count():
    block = Mamba(512)
    shapes = {k: tuple(v.shape) for k, v in block.state_dict().items()}
    assert shapes == EXPECTED_512
    d_model, d_inner, n, r, w = 512, 1024, 16, math.ceil(512 / 16), 4
    formula = (
        d_model * 2 * d_inner  # in_proj
        + d_inner * w + d_inner  # depthwise conv1d and its bias
        + d_inner * (r + 2 * n)  # x_proj
        + r * d_inner + d_inner  # dt_proj and its bias
        + d_inner * n + d_inner  # A_log, D
        + d_inner * d_model  # out_proj
    )
    count = sum(p.numel() for p in block.parameters())
    assert count == formula
    assert round(count / 1e6, 2) == 1.69


def test_state_dict_round_trip():
    a, b = small_block(), small_block()
    x = torch.randn(2, 10, 16, dtype=F64)
    assert not torch.allclose(a(x), b(x))
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b(x), a(x))


def test_initialisation_follows_the_public_block():
    torch.manual_seed(1)
    block = Mamba(64, d_state=16, dt_min=0.001, dt_max=0.1)
    A = -torch.exp(block.A_log)
    torch.testing.assert_close(A, -torch.arange(1, 17.0).expand(128, 16))
    torch.testing.assert_close(block.D, torch.ones(128))
    dt = torch.nn.functional.softplus(block.dt_proj.bias)
    assert dt.min() >= 0.001 * 0.999 and dt.max() <= 0.1 * 1.001
    bound = block.dt_rank**-0.5
    assert block.dt_proj.weight.abs().max() <= bound
    assert block.A_log.dtype == torch.float32 and block.D.dtype == torch.float32
    for p in (block.A_log, block.D):
        assert p._no_weight_decay
    for p in (block.A_log, block.D, block.dt_proj.bias):
        assert p._no_reinit


def test_step_by_step_equals_full_forward():
    block = small_block()
    x = torch.randn(2, 13, 16, dtype=F64)
    full = block(x)
    conv_state, ssm_state = block.allocate_inference_state(2, dtype=F64)
    steps = [block.step(x[:, t], conv_state, ssm_state)[0] for t in range(x.shape[1])]
    torch.testing.assert_close(torch.stack(steps, dim=1), full)
    # the public layout (b, 1, d_model) works too
    conv_state, ssm_state = block.allocate_inference_state(2, dtype=F64)
    first, _, _ = block.step(x[:, :1], conv_state, ssm_state)
    torch.testing.assert_close(first, full[:, :1])


def test_causality():
    block = small_block()
    x = torch.randn(1, 20, 16, dtype=F64)
    changed = x.clone()
    changed[:, 12:] = torch.randn(1, 8, 16, dtype=F64)
    y, y_changed = block(x), block(changed)
    torch.testing.assert_close(y[:, :12], y_changed[:, :12])
    assert not torch.allclose(y[:, 12:], y_changed[:, 12:])


def test_bad_arguments():
    with pytest.raises(ValueError, match="backend"):
        Mamba(8, backend="cuda")
    with pytest.raises(ValueError, match=r"\(b, l, 8\)"):
        Mamba(8)(torch.randn(2, 8))


@pytest.mark.skipif(importlib.util.find_spec("mamba_ssm") is not None, reason="mamba_ssm is installed here")
def test_missing_fused_backend_names_the_install():
    with pytest.raises(ImportError, match=r"mgtutor\[cuda\].*MAMBA_FORCE_BUILD|MAMBA_FORCE_BUILD.*mgtutor\[cuda\]"):
        Mamba(8, backend="mamba_ssm")
    # "auto" falls back to the pure PyTorch scan
    block = Mamba(8, backend="auto")
    assert block(torch.randn(1, 5, 8)).shape == (1, 5, 8)


def test_fused_path_passes_the_reference_arguments(monkeypatch):
    """The fused backend calls a scan with selective_scan_fn's signature; the loop has the same one."""
    from mgtutor.ssm import mamba as mamba_module
    from mgtutor.ssm import selective_scan_loop

    calls = []

    def recording_scan(*args, **kwargs):
        calls.append(kwargs)
        return selective_scan_loop(*args, **kwargs)

    block = small_block()
    x = torch.randn(2, 11, 16, dtype=F64)
    expected = block(x)
    monkeypatch.setattr(mamba_module, "_fused_scan_fn", lambda: recording_scan)
    monkeypatch.setattr(Mamba, "_use_fused", lambda self, x: True)
    torch.testing.assert_close(block(x), expected)
    assert calls and calls[0]["delta_softplus"] is True and calls[0]["z"] is not None


def test_fused_backend_refuses_cpu_input(monkeypatch):
    from mgtutor.ssm import mamba as mamba_module

    monkeypatch.setattr(mamba_module, "_fused_scan_fn", lambda: None)
    block = Mamba(8, backend="mamba_ssm")
    with pytest.raises(RuntimeError, match="CUDA"):
        block(torch.randn(1, 4, 8))


# -- which mamba_ssm the fused path accepts: stand-in packages on sys.path --------------------------------

NEXT_RELEASE = '''
try:  # as mamba-ssm after 2.3.2.post1: the compiled kernels are optional at import
    import selective_scan_cuda
except ImportError:
    selective_scan_cuda = None


def selective_scan_fn(*args, **kwargs):
    if selective_scan_cuda is None:
        raise RuntimeError("selective_scan_cuda is not installed")
    return "fused"
'''
CURRENT_RELEASE = '''
import selective_scan_cuda  # as mamba-ssm up to 2.3.2.post1: no kernels, no import


def selective_scan_fn(*args, **kwargs):
    return "fused"
'''


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """``stand_in(interface_source, kernels=False)``: a fake ``mamba_ssm`` (and, with ``kernels``, a fake
    compiled ``selective_scan_cuda``) first on sys.path, with mgtutor's cached answer cleared."""
    from mgtutor.ssm import mamba as mamba_module

    for name in [n for n in sys.modules if n.split(".")[0] in ("mamba_ssm", "selective_scan_cuda")]:
        monkeypatch.delitem(sys.modules, name)
    mamba_module._fused_available.cache_clear()
    monkeypatch.syspath_prepend(str(tmp_path))

    def make(interface: str, kernels: bool = False) -> None:
        ops = tmp_path / "mamba_ssm" / "ops"
        ops.mkdir(parents=True)
        (tmp_path / "mamba_ssm" / "__init__.py").write_text("")
        (ops / "__init__.py").write_text("")
        (ops / "selective_scan_interface.py").write_text(interface)
        if kernels:
            (tmp_path / "selective_scan_cuda.py").write_text("")
        importlib.invalidate_caches()

    yield make
    mamba_module._fused_available.cache_clear()


@pytest.mark.parametrize("release", ["next", "current"])
def test_mamba_ssm_without_compiled_kernels_is_not_chosen(stand_in, release):
    from mgtutor.ssm import mamba as mamba_module

    stand_in(NEXT_RELEASE if release == "next" else CURRENT_RELEASE)
    if release == "next":
        import mamba_ssm.ops.selective_scan_interface  # noqa: F401  (it imports: the old check would pass)
    assert not mamba_module._fused_available()
    with pytest.raises(ImportError) as caught:
        Mamba(8, backend="mamba_ssm")
    message = str(caught.value)
    assert "MAMBA_FORCE_BUILD=TRUE MAMBA_KEEP_CUDA_BUILD=TRUE pip install --no-build-isolation" in message
    assert "selective_scan_cuda" in message
    block = Mamba(8, backend="auto")  # falls back to the PyTorch scan
    assert block(torch.randn(1, 5, 8)).shape == (1, 5, 8)


@pytest.mark.parametrize("release", ["next", "current"])
def test_mamba_ssm_with_its_kernels_is_chosen(stand_in, release):
    from mgtutor.ssm import mamba as mamba_module

    stand_in(NEXT_RELEASE if release == "next" else CURRENT_RELEASE, kernels=True)
    assert mamba_module._fused_available()
    assert mamba_module._fused_scan_fn()() == "fused"
    Mamba(8, backend="mamba_ssm")  # no error at construction


def test_readme_gives_the_install_command():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    lines = [line for line in readme.splitlines() if "pip install" in line and "[cuda]" in line]
    assert lines and all("MAMBA_FORCE_BUILD=TRUE MAMBA_KEEP_CUDA_BUILD=TRUE " in line and "--no-build-isolation" in line for line in lines)
