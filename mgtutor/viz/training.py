"""The training curve: each loss term, the learning rate and the evaluation figures per epoch.

Small multiples, one question a panel, the epoch on every x axis:

- **total loss**: the weighted sum the optimiser minimises;
- **last layer**: each term of the last decoder layer (class, L1, tIoU) and the dense head, unweighted;
- **<term> by decoder layer**: that term for every layer with an auxiliary loss (``loss/class_0`` is
  layer 1's class term; the unsuffixed one the last layer's), earlier layers lighter;
- **evaluation**: the figures the evaluator logged (F1, mAP, ...), on [0, 1].

Loss axes are logarithmic. Every panel marks the epochs where the learning rate changed with a thin grey
line, in place of a learning-rate axis.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure, SubFigure
from matplotlib.ticker import LogFormatter

from mgtutor.train.log import read_log


def _records(source: str | Path | Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    records = read_log(source) if isinstance(source, (str, Path)) else list(source)
    if not records:
        raise ValueError("the training log holds no epoch yet")
    return records


# Evaluation figures drawn by default when the log has them (the evaluation also logs counts, the
# chosen score threshold and mAP at each tIoU, which would crowd the picture).
DEFAULT_METRICS = ("f1", "strict_f1", "map", "precision", "recall")
AUX_TERM = re.compile(r"^loss/(.+)_(\d+)$")  # decoder layer i + 1's term, e.g. loss/class_0 for layer 1
TERM_COLOURS = plt.get_cmap("tab10").colors
# PointTAD's terms in the order the loss adds them, with the names the notebooks use
TERM_NAMES = {"loss/class": "class", "loss/l1": "L1", "loss/iou": "1 - tIoU", "loss/dense": "dense"}


def _name(term: str) -> str:
    return TERM_NAMES.get(term, term.removeprefix("loss/"))


def _lighter(colour: Any, amount: float) -> tuple[float, float, float]:
    """``colour`` blended towards white by ``amount`` in [0, 1]."""
    return tuple(c + (1 - c) * amount for c in to_rgb(colour))  # type: ignore[return-value]


def _series(records: Sequence[dict[str, Any]], name: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of the records that hold ``name``."""
    pairs = [(r["epoch"], r[name]) for r in records if name in r]
    return [e for e, _ in pairs], [v for _, v in pairs]


class PlainLogFormatter(LogFormatter):
    """Log-axis tick labels as plain numbers (0.2, 1, 30) where matplotlib would label a tick at all."""

    def __call__(self, x: float, pos: int | None = None) -> str:
        return f"{x:g}" if super().__call__(x, pos) else ""


def _log_scale_if_positive(ax: Axes, values: Sequence[float]) -> None:
    finite = [v for v in values if np.isfinite(v)]
    if finite and min(finite) > 0:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(PlainLogFormatter())
        # minor ticks labelled too: some (3, 30) on up to two decades, all of them on under half a decade
        ax.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def _lr_changes(records: Sequence[dict[str, Any]]) -> tuple[list[float], str | None]:
    """Where the learning rate changed (between two epochs) and a legend label for those lines."""
    epochs, rates = _series(records, "lr")
    at = [(a + b) / 2 for a, b, x, y in zip(epochs, epochs[1:], rates, rates[1:]) if x != y]
    ratios = {round(y / x, 6) for x, y in zip(rates, rates[1:]) if x != y and x > 0}
    if not at:
        return at, None
    return at, f"learning rate x{ratios.pop():g}" if len(ratios) == 1 else "learning rate changed"


def plot_training_log(
    source: str | Path | Sequence[dict[str, Any]],
    metrics: Sequence[str] | None = None,
    figsize: tuple[float, float] | None = None,
    figure: Figure | SubFigure | None = None,
) -> Figure | SubFigure:
    """Draw a ``log.jsonl`` (a path, or its records as ``mgtutor.train.log.read_log`` returns them) as
    the small multiples the module docstring lists.

    Args:
        source: the log file or its records (one dict an epoch: ``epoch``, ``lr``, ``loss/<term>``,
            optionally ``eval/<figure>``).
        metrics: evaluation figures to draw (default: those of :data:`DEFAULT_METRICS` in the log, or
            every ``eval/*`` figure when it has none of them).
        figsize: the new figure's size (default 4 x 3.1 inches a panel).
        figure: draw into this figure or subfigure instead of a new one.

    Returns:
        The figure; its axes in reading order, each titled with its panel's question.
    """
    records = _records(source)
    loss_names = sorted({k for r in records for k in r if k.startswith("loss/")})
    aux = {name: AUX_TERM.match(name) for name in loss_names}
    known = list(TERM_NAMES)
    terms = sorted((n for n in loss_names if not aux[n] and n != "loss/total"),
                   key=lambda n: (known.index(n) if n in known else len(known), n))  # fmt: skip
    layered = {}  # last-layer term -> its earlier layers' names, in layer order
    for name, match in aux.items():
        if match and f"loss/{match.group(1)}" in terms:
            layered.setdefault(f"loss/{match.group(1)}", []).append((int(match.group(2)), name))
    logged = {k.removeprefix("eval/") for r in records for k in r if k.startswith("eval/")}
    if metrics is None:
        metrics = [m for m in DEFAULT_METRICS if m in logged] or sorted(logged)
    metrics = [m for m in metrics if m in logged]

    top = ["total"] * ("loss/total" in loss_names) + ["terms"] * bool(terms) + ["eval"] * bool(metrics)
    bottom = [term for term in terms if term in layered]
    if not top:
        raise ValueError("the training log holds no loss term and no evaluation figure")
    ncols, nrows = max(len(top), len(bottom)), 1 + bool(bottom)
    if figure is None:
        figure = plt.figure(figsize=figsize or (4.0 * ncols, 3.1 * nrows), layout="constrained")
    grid = figure.add_gridspec(nrows, ncols)
    colour_of = {term: TERM_COLOURS[i % len(TERM_COLOURS)] for i, term in enumerate(terms)}
    lr_at, lr_label = _lr_changes(records)
    axes: list[Axes] = []

    def panel(row: int, col: int, title: str, ylabel: str) -> Axes:
        ax = figure.add_subplot(grid[row, col], sharex=axes[0] if axes else None)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        for x in lr_at:  # named once, in the first panel's legend
            ax.axvline(x, color="grey", linestyle=":", linewidth=1, label=lr_label if x == lr_at[0] and not axes else None)
        axes.append(ax)
        return ax

    for col, kind in enumerate(top):
        if kind == "total":
            ax = panel(0, col, "total loss (what is minimised)", "loss, mean over the epoch")
            epochs, values = _series(records, "loss/total")
            ax.plot(epochs, values, marker="o", markersize=3, color="black", linewidth=2, label="total")
            _log_scale_if_positive(ax, values)
        elif kind == "terms":
            ax = panel(0, col, "last layer: each term, unweighted", "loss, mean over the epoch")
            drawn = []
            for term in terms:
                epochs, values = _series(records, term)
                ax.plot(epochs, values, marker="o", markersize=3, color=colour_of[term], label=_name(term))
                drawn += values
            _log_scale_if_positive(ax, drawn)
        else:
            ax = panel(0, col, "evaluation", "figure on the evaluation split")
            colours = plt.get_cmap("Dark2").colors  # apart from the loss terms' colours
            drawn = []
            for index, metric in enumerate(metrics):
                epochs, values = _series(records, f"eval/{metric}")
                ax.plot(epochs, values, marker="s", markersize=4, color=colours[index % len(colours)], label=metric)
                drawn += values
            if all(0 <= v <= 1 for v in drawn):
                ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize="small", loc="best")

    for col, term in enumerate(bottom):
        ax = panel(1, col, f"{_name(term)} by decoder layer", "loss, mean over the epoch")
        layers = [aux_name for _, aux_name in sorted(layered[term])] + [term]
        drawn = []
        for index, layer_name in enumerate(layers):
            last = index == len(layers) - 1
            lightness = 0.75 * (1 - (index + 1) / len(layers))  # the last layer in the term's own colour
            epochs, values = _series(records, layer_name)
            label = f"layer {index + 1}" + (" (last)" if last else "")
            ax.plot(epochs, values, marker="o", markersize=3 if last else 2, linewidth=1.8 if last else 1.2,
                    color=_lighter(colour_of[term], lightness), label=label)  # fmt: skip
            drawn += values
        _log_scale_if_positive(ax, drawn)
        ax.legend(fontsize="small", loc="best")
    return figure


def save_training_curve(source: str | Path | Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Draw the log with :func:`plot_training_log` and save it as an image (e.g. ``training_curve.png``)."""
    figure = plot_training_log(source)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path
