"""Plots of discretised SSMs: the figure the notebook's Delta slider draws."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mgtutor.viz.ssm import impulse_response_figure, oscillator_ssm  # noqa: E402


def test_figure_follows_delta():
    small, large = impulse_response_figure(0.01), impulse_response_figure(0.5)
    try:
        for fig, delta in ((small, 0.01), (large, 0.5)):
            curves, eigenvalues = fig.axes
            assert f"{delta:.3g}" in curves.get_title()
            assert curves.lines[0].get_label().startswith("continuous")  # the exact response is drawn first
            zoh = next(line for line in curves.lines if "zero-order" in line.get_label())
            # the k-th tap sits at t = k delta
            np.testing.assert_allclose(np.diff(zoh.get_xdata())[:3], delta)
            assert len(eigenvalues.collections) == 4
        # at a small step the zero-order-hold kernel traces the continuous response
        curves = small.axes[0]
        exact_x, exact_y = curves.lines[0].get_data()
        zoh = next(line for line in curves.lines if "zero-order" in line.get_label())
        x, y = zoh.get_data()
        np.testing.assert_allclose(y, np.interp(x + 0.005, exact_x, exact_y), atol=0.01)
    finally:
        plt.close("all")


def test_oscillator_is_stable_and_bad_delta_refused():
    import torch

    A, _, _ = oscillator_ssm()
    assert (torch.linalg.eigvals(A).real < 0).all()
    with pytest.raises(ValueError, match="positive"):
        impulse_response_figure(0.0)
