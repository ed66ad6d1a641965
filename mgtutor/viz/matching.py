"""The Hungarian matching of one window, drawn: each cost term as a matrix, their sum, the assignment.

:func:`plot_cost_matrix` draws one heatmap per (already weighted) cost term of
:func:`mgtutor.train.matching.matching_cost` and a last one of their sum, which is the matrix that
``linear_sum_assignment`` minimises over. Rows are queries (predictions), columns ground-truth
gestures; the assigned cells are outlined in every panel, so one can see which term decided.

Shapes: q queries, g ground-truth segments of the window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle


def _as_numpy(matrix: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(matrix, torch.Tensor):
        matrix = matrix.detach().cpu().double().numpy()
    return np.asarray(matrix, dtype=np.float64)


def plot_cost_matrix(
    terms: Mapping[str, torch.Tensor | np.ndarray],
    assignment: tuple[Sequence[int], Sequence[int]] | None = None,
    target_names: Sequence[str] | None = None,
    annotate: bool | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Heatmaps of the matching's cost terms and of their sum, the assignment outlined.

    Args:
        terms: name -> (q, g) cost term, weights included (e.g. ``{"class: 10 * (-p)": ..., "L1: 5 * L1":
            ..., "tIoU: 5 * (-tIoU)": ...}``); drawn left to right, then a panel "total" of their sum.
        assignment: ``(pred_idx, tgt_idx)`` as :func:`mgtutor.train.matching.hungarian_match` returns it;
            query ``pred_idx[n]`` is assigned to ground truth ``tgt_idx[n]``.
        target_names: a column label per ground truth (default ``gt 0``, ``gt 1``, ...).
        annotate: write each cell's value (default: when the matrices have at most 200 cells).
        figsize: default ``(2.6 * panels, 1.2 + 0.3 * q)``.

    Returns:
        The figure; its axes are the panels in order. Lower cost is darker; within each panel the colour
        scale is that panel's own.
    """
    if not terms:
        raise ValueError("no cost term to draw")
    matrices = {name: _as_numpy(matrix) for name, matrix in terms.items()}
    shapes = {matrix.shape for matrix in matrices.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"every cost term must be the same (q, g) matrix, got shapes {sorted(shapes)}")
    queries, targets = next(iter(shapes))
    if target_names is not None and len(target_names) != targets:
        raise ValueError(f"got {len(target_names)} target names for {targets} ground-truth columns")
    pairs: list[tuple[int, int]] = []
    if assignment is not None:
        pred_idx, tgt_idx = (list(map(int, indices)) for indices in assignment)
        if len(pred_idx) != len(tgt_idx):
            raise ValueError(f"assignment has {len(pred_idx)} queries but {len(tgt_idx)} targets")
        if any(not 0 <= p < queries for p in pred_idx) or any(not 0 <= t < targets for t in tgt_idx):
            raise ValueError(f"assignment indices must lie in the ({queries}, {targets}) matrix")
        pairs = list(zip(pred_idx, tgt_idx))
    panels = {**matrices, "total": sum(matrices.values())}
    annotate = queries * targets <= 200 if annotate is None else annotate
    figsize = figsize or (2.6 * len(panels), 1.2 + 0.3 * queries)
    figure, axes = plt.subplots(1, len(panels), figsize=figsize, layout="constrained", squeeze=False)
    names = list(target_names) if target_names is not None else [f"gt {j}" for j in range(targets)]
    for ax, (name, matrix) in zip(axes[0], panels.items()):
        image = ax.imshow(matrix, cmap="Blues_r", aspect="auto", interpolation="nearest")
        if annotate:
            middle = (np.nanmin(matrix) + np.nanmax(matrix)) / 2 if matrix.size else 0.0
            for (i, j), value in np.ndenumerate(matrix):
                ax.text(j, i, f"{value:.2f}".replace("-0.00", "0.00"), ha="center", va="center", fontsize=7,
                        color="white" if value < middle else "black")  # fmt: skip
        for i, j in pairs:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="tab:red", linewidth=2.2))
        crowded = sum(len(name) for name in names) > 6 * targets  # long names would run into each other
        ax.set_xticks(range(targets), names, rotation=40 if crowded else 0, ha="right" if crowded else "center",
                      fontsize=8)  # fmt: skip
        ax.set_yticks(range(queries))
        ax.tick_params(axis="y", labelsize=8)
        ax.set_title(name, fontsize=10, fontweight="bold" if name == "total" else "normal")
        figure.colorbar(image, ax=ax, shrink=0.6, location="bottom")
    axes[0][0].set_ylabel("query")
    figure.suptitle("matching cost (queries x ground truths); red: the assignment minimising the total")
    return figure
