"""The scan benchmark: its memory counter, its table, and `benchmarks/scan_speed.py --quick`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from mgtutor.ssm import selective_scan, selective_scan_loop
from mgtutor.ssm.benchmark import PeakTensorMemory, contenders, peak_bytes, scan_inputs

REPO = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("scan_speed", REPO / "benchmarks" / "scan_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_peak_counter_sees_what_is_alive_at_once():
    def work():
        a = torch.empty(1000, 250)  # 1 MB
        b = torch.empty(2000, 250)  # 2 MB, while a is alive
        del a
        c = torch.empty(500, 250)  # 0.5 MB, after a is gone
        return b, c

    with PeakTensorMemory() as counter:
        kept = work()
    assert counter.peak == 3_000_000
    assert counter.now == 2_500_000  # b and c are still referenced
    del kept
    assert counter.now == 0


def test_contenders_agree():
    inputs = scan_inputs(1, 8, 4, 21)
    outs = {name: scan(**inputs) for name, scan in contenders(with_mambapy=False).items()}
    for name, out in outs.items():
        torch.testing.assert_close(out, outs["mgtutor"], msg=lambda m: f"{name}: {m}")


def test_chunked_backward_does_not_keep_every_state():
    """The loop keeps all (b, l, d, n) states for its backward; the chunked scan only chunk boundaries."""
    b, d, n, l = 1, 32, 64, 1024
    inputs = {k: v.requires_grad_() for k, v in scan_inputs(b, d, n, l).items()}
    states = b * l * d * n * 4

    def fwd_bwd(scan, **kwargs):
        return lambda: scan(**inputs, delta_softplus=True, **kwargs).sum().backward()

    loop_peak = peak_bytes(fwd_bwd(selective_scan_loop))
    chunked_peak = peak_bytes(fwd_bwd(selective_scan, chunk_size=16))
    assert loop_peak > 2 * states
    assert chunked_peak < 0.6 * states  # the (b, d, l) inputs, outputs and gradients are most of it


def test_script_quick_run_prints_and_writes_the_section(tmp_path, capsys):
    script = load_script()
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n\nIntro.\n\n## Scan speed\n\nold table\n\n## Detector speed\n\nkeep me\n")
    assert script.main(["--quick", "--readme", str(readme)]) == 0
    printed = capsys.readouterr().out
    assert "machine:" in printed
    for name in ("mgtutor", "loop", "naive loop"):
        assert f"| 48 | {name} |" in printed
    text = readme.read_text()
    assert "old table" not in text and "keep me" in text and "Intro." in text
    assert text.count("## Scan speed") == 1 and "| 7 | mgtutor |" in text
    # a second run replaces the section again instead of adding one
    assert script.main(["--quick", "--no-mambapy", "--readme", str(readme)]) == 0
    assert readme.read_text().count("## Scan speed") == 1
