"""The training curve: each loss term, the learning rate and the evaluation figures per epoch."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from mgtutor.train.log import read_log


def _records(source: str | Path | Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    records = read_log(source) if isinstance(source, (str, Path)) else list(source)
    if not records:
        raise ValueError("the training log holds no epoch yet")
    return records


# Evaluation figures drawn by default when the log has them (the evaluation also logs counts, the
# chosen score threshold and mAP at each tIoU, which would crowd the picture).
DEFAULT_METRICS = ("f1", "strict_f1", "map", "precision", "recall")
AUX_TERM = re.compile(r"^loss/(.+)_(\d+)$")  # decoder layer i's term, e.g. loss/class_0


def plot_training_log(
    source: str | Path | Sequence[dict[str, Any]],
    ax: Axes | None = None,
    metrics: Sequence[str] | None = None,
) -> Figure:
    """Draw a ``log.jsonl`` (a path, or its records as ``mgtutor.train.log.read_log`` returns them).

    Left axis (log scale): the mean of every loss term per epoch, the total in black, the earlier
    decoder layers' auxiliary terms (``class_0``, ...) dotted in their final-layer term's colour.
    Right axis: the evaluation figures ``metrics`` (default: those of :data:`DEFAULT_METRICS` in the
    log, or every ``eval/*`` figure when it has none of them). A second right axis, set apart (log
    scale): the learning rate, whose halvings every ``train.lr_step`` epochs show as equal steps.
    """
    records = _records(source)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    epochs = [r["epoch"] for r in records]
    loss_names = sorted(
        {k for r in records for k in r if k.startswith("loss/")},
        key=lambda k: (k != "loss/total", bool(AUX_TERM.match(k)), k),
    )
    logged = {k.removeprefix("eval/") for r in records for k in r if k.startswith("eval/")}
    if metrics is None:
        metrics = [m for m in DEFAULT_METRICS if m in logged] or sorted(logged)
    eval_names = [f"eval/{m}" for m in metrics if m in logged]

    colours = plt.get_cmap("tab10").colors
    main_terms = [n for n in loss_names if not AUX_TERM.match(n)]
    colour_of = {name: colours[i % len(colours)] for i, name in enumerate(n for n in main_terms if n != "loss/total")}
    colour_of["loss/total"] = "black"
    for name in loss_names:
        values = [r.get(name, float("nan")) for r in records]
        aux = AUX_TERM.match(name)
        if aux:  # an earlier decoder layer's term: thin, dotted, in its final-layer term's colour
            style = {"color": colour_of.get(f"loss/{aux.group(1)}", "grey"), "linewidth": 0.9, "linestyle": ":"}
            ax.plot(epochs, values, label="_aux", alpha=0.7, **style)
            continue
        width = 2.2 if name == "loss/total" else 1.3
        label = name.removeprefix("loss/")
        ax.plot(epochs, values, marker="o", markersize=3, color=colour_of[name], linewidth=width, label=label)
    if all(r.get(n, 1.0) > 0 for r in records for n in loss_names):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss (mean over the epoch)")
    handles, labels = ax.get_legend_handles_labels()
    if len(main_terms) < len(loss_names):
        handles.append(Line2D([], [], color="grey", linewidth=0.9, linestyle=":"))
        labels.append("earlier layers")

    if eval_names:
        ax_eval = ax.twinx()
        colours = plt.get_cmap("Dark2").colors  # apart from the loss terms' default colours
        for index, name in enumerate(eval_names):
            points = [(r["epoch"], r[name]) for r in records if name in r]
            ax_eval.plot(
                *zip(*points),
                marker="s",
                linestyle="--",
                linewidth=1.8,
                color=colours[index % len(colours)],
                label=name.removeprefix("eval/"),
            )
        if all(0 <= r[name] <= 1 for r in records for name in eval_names if name in r):
            ax_eval.set_ylim(-0.02, 1.02)
        ax_eval.set_ylabel("evaluation")
        more_handles, more_labels = ax_eval.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels

    ax_lr = ax.twinx()
    if eval_names:
        ax_lr.spines["right"].set_position(("axes", 1.13))
    ax_lr.step(epochs, [r["lr"] for r in records], where="post", color="grey", linestyle=":", label="learning rate")
    ax_lr.set_yscale("log")  # each halving is a step of the same height
    ax_lr.set_ylabel("learning rate", color="grey")
    ax_lr.tick_params(axis="y", which="both", colors="grey")
    more_handles, more_labels = ax_lr.get_legend_handles_labels()
    ax.legend(
        handles + more_handles,
        labels + more_labels,
        fontsize="small",
        loc="upper center",
        bbox_to_anchor=(0.5, -0.14),
        ncols=5,
        frameon=False,
    )
    ax.set_title("training curve")
    return ax.figure


def save_training_curve(source: str | Path | Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Draw the log with :func:`plot_training_log` and save it as an image (e.g. ``training_curve.png``)."""
    figure = plot_training_log(source)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path
