"""The per-epoch log (JSON lines) and the training-curve plot drawn from it."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest
from matplotlib.colors import to_rgb

from mgtutor.train.log import append_record, layer_losses, read_log, write_log
from mgtutor.viz.training import plot_training_log, save_training_curve


def records(with_eval: bool):
    out = []
    for epoch in range(1, 7):
        record = {"epoch": epoch, "lr": 1e-4 * 0.5 ** ((epoch - 1) // 2), "time": 1.0}
        record |= {"loss/total": 3.0 / epoch, "loss/class": 1.0 / epoch, "loss/l1": 0.4 / epoch}
        if with_eval and epoch % 2 == 0:
            record |= {"eval/f1": 0.1 * epoch, "eval/map": 0.05 * epoch}
        out.append(record)
    return out


def test_append_read_and_rewrite(tmp_path):
    path = tmp_path / "log.jsonl"
    for record in records(True)[:3]:
        append_record(path, record)
    assert read_log(path) == records(True)[:3]
    write_log(path, records(True)[:1])
    assert read_log(path) == records(True)[:1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.jsonl"]


def test_a_line_cut_short_at_the_end_is_ignored_elsewhere_refused(tmp_path):
    path = tmp_path / "log.jsonl"
    write_log(path, records(False)[:2])
    with path.open("a") as handle:
        handle.write('{"epoch": 3, "loss/to')
    assert [r["epoch"] for r in read_log(path)] == [1, 2]
    path.write_text('{"epoch": 1}\nnot json\n{"epoch": 3}\n')
    with pytest.raises(ValueError, match="log.jsonl, line 2"):
        read_log(path)
    with pytest.raises(FileNotFoundError, match="no training log"):
        read_log(tmp_path / "missing.jsonl")


def test_layer_losses_reads_every_layer_at_the_last_epoch():
    log = [
        {"epoch": 1, "loss/class": 2.0, "loss/class_0": 2.5, "loss/class_1": 2.4, "loss/class_2": 2.3},
        {"epoch": 2, "loss/class": 0.5, "loss/class_0": 2.6, "loss/class_1": 0.9, "loss/class_2": 0.7, "loss/l1": 0.1},
    ]
    assert layer_losses(log, layers=4) == [2.6, 0.9, 0.7, 0.5]
    # train.aux_layers: pointtad at batch 1 logs layer 0 and the last only
    values = layer_losses([{"loss/class": 0.5, "loss/class_0": 2.6}], layers=4)
    assert values[0] == 2.6 and values[3] == 0.5 and math.isnan(values[1]) and math.isnan(values[2])
    assert layer_losses(log, layers=1, term="l1") == [0.1]
    with pytest.raises(KeyError, match="loss/iou"):
        layer_losses(log, layers=4, term="iou")
    with pytest.raises(ValueError, match="no epoch"):
        layer_losses([], layers=4)


def panels(figure):
    """title -> axes, and title -> {line label: line} (the learning-rate marks left out)."""
    axes = {ax.get_title(): ax for ax in figure.axes}
    lines = {title: {line.get_label(): line for line in ax.get_lines() if line.get_linestyle() != ":"} for title, ax in axes.items()}
    return axes, lines


@pytest.mark.parametrize("with_eval", [True, False])
def test_plot_draws_a_panel_a_question(tmp_path, with_eval):
    path = tmp_path / "log.jsonl"
    write_log(path, records(with_eval))
    figure = plot_training_log(path)
    axes, lines = panels(figure)
    total, terms = "total loss (what is minimised)", "last layer: each term, unweighted"
    assert list(axes) == [total, terms] + ["evaluation"] * with_eval  # no aux terms: no per-layer row
    assert list(lines[total]["total"].get_ydata()) == [3.0 / e for e in range(1, 7)]
    assert list(lines[terms]) == ["class", "L1"]
    assert list(lines[terms]["L1"].get_ydata()) == [0.4 / e for e in range(1, 7)]
    assert axes[total].get_yscale() == "log" and axes[terms].get_yscale() == "log"
    if with_eval:
        assert list(lines["evaluation"]["f1"].get_xdata()) == [2, 4, 6]
        assert list(lines["evaluation"]["map"].get_ydata()) == [0.1, 0.2, 0.30000000000000004]
    plt.close(figure)


def test_the_learning_rate_changes_are_marked_on_every_panel():
    figure = plot_training_log(records(True))  # lr halved after epochs 2 and 4
    for ax in figure.axes:
        marks = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
        assert [line.get_xdata()[0] for line in marks] == [2.5, 4.5]
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert legend == ["learning rate x0.5", "total"]
    assert all("learning rate" not in t.get_text() for ax in figure.axes[1:] for t in ax.get_legend().get_texts())
    plt.close(figure)
    steady = [r | {"lr": 1e-4} for r in records(False)]
    figure = plot_training_log(steady)
    assert not [line for ax in figure.axes for line in ax.get_lines() if line.get_linestyle() == ":"]
    plt.close(figure)


def test_auxiliary_terms_get_a_panel_a_term_with_a_line_a_layer():
    log = [r | {"loss/class_0": 1.5 / r["epoch"], "loss/class_1": 1.2 / r["epoch"], "loss/l1_0": 0.5 / r["epoch"]} for r in records(False)]
    figure = plot_training_log(log)
    axes, lines = panels(figure)
    assert list(axes)[2:] == ["class by decoder layer", "L1 by decoder layer"]
    assert list(lines["class by decoder layer"]) == ["layer 1", "layer 2", "layer 3 (last)"]
    by_layer = lines["class by decoder layer"]
    assert list(by_layer["layer 1"].get_ydata()) == [1.5 / e for e in range(1, 7)]
    assert list(by_layer["layer 3 (last)"].get_ydata()) == [1.0 / e for e in range(1, 7)]
    # the last layer in the term's own colour, earlier layers lighter
    assert by_layer["layer 3 (last)"].get_color() == lines["last layer: each term, unweighted"]["class"].get_color()
    assert sum(to_rgb(by_layer["layer 1"].get_color())) > sum(to_rgb(by_layer["layer 2"].get_color()))
    assert list(lines["L1 by decoder layer"]) == ["layer 1", "layer 2 (last)"]
    plt.close(figure)


def test_plot_picks_the_headline_metrics_unless_told():
    log = [r | {"eval/f1": 0.5, "eval/map": 0.2, "eval/correct": 12, "eval/map@0.5": 0.3} for r in records(False)]

    def drawn(figure):
        names = set(panels(figure)[1]["evaluation"])
        plt.close(figure)
        return names

    assert drawn(plot_training_log(log)) == {"f1", "map"}
    assert drawn(plot_training_log(log, metrics=["map@0.5", "f1"])) == {"map@0.5", "f1"}
    other = [r | {"eval/accuracy": 0.7} for r in records(False)]
    assert drawn(plot_training_log(other)) == {"accuracy"}


def test_plot_into_a_given_figure_and_save(tmp_path):
    figure = plt.figure(figsize=(8, 3))
    assert plot_training_log(records(True), figure=figure) is figure
    assert len(figure.axes) == 3 and tuple(figure.get_size_inches()) == (8, 3)
    plt.close(figure)
    figure = plot_training_log(records(True), figsize=(10, 3))
    assert tuple(figure.get_size_inches()) == (10, 3)
    plt.close(figure)
    png = save_training_curve(records(True), tmp_path / "curve" / "training_curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.get_fignums()  # the saved figure was closed
    with pytest.raises(ValueError, match="no epoch"):
        plot_training_log([])
