"""The per-epoch log (JSON lines) and the training-curve plot drawn from it."""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pytest

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


@pytest.mark.parametrize("with_eval", [True, False])
def test_plot_draws_every_term_the_lr_and_the_evaluation(tmp_path, with_eval):
    path = tmp_path / "log.jsonl"
    write_log(path, records(with_eval))
    figure = plot_training_log(path)
    loss_ax, *right = figure.axes
    assert [line.get_label() for line in loss_ax.get_lines()] == ["total", "class", "l1"]
    assert list(loss_ax.get_lines()[0].get_ydata()) == [3.0 / e for e in range(1, 7)]
    assert loss_ax.get_yscale() == "log"
    labels = {line.get_label(): line for ax in right for line in ax.get_lines()}
    assert list(labels["learning rate"].get_ydata()) == [r["lr"] for r in records(False)]
    if with_eval:
        assert list(labels["f1"].get_xdata()) == [2, 4, 6] and len(right) == 2
    else:
        assert "f1" not in labels and len(right) == 1
    legend = [text.get_text() for text in loss_ax.get_legend().get_texts()]
    assert "learning rate" in legend and ("f1" in legend) == with_eval
    plt.close(figure)


def test_auxiliary_terms_are_dotted_in_their_terms_colour():
    log = [r | {"loss/class_0": 1.5 / r["epoch"], "loss/l1_0": 0.5 / r["epoch"]} for r in records(False)]
    figure = plot_training_log(log)
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    assert list(lines) == ["total", "class", "l1", "_aux"]  # the two aux lines share one hidden label
    aux = [line for line in figure.axes[0].get_lines() if line.get_label() == "_aux"]
    assert [line.get_color() for line in aux] == [lines["class"].get_color(), lines["l1"].get_color()]
    assert all(line.get_linestyle() == ":" for line in aux)
    assert "earlier layers" in [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    plt.close(figure)


def test_plot_picks_the_headline_metrics_unless_told():
    log = [r | {"eval/f1": 0.5, "eval/map": 0.2, "eval/correct": 12, "eval/map@0.5": 0.3} for r in records(False)]

    def drawn(figure):
        names = {line.get_label() for ax in figure.axes[1:] for line in ax.get_lines()} - {"learning rate"}
        plt.close(figure)
        return names

    assert drawn(plot_training_log(log)) == {"f1", "map"}
    assert drawn(plot_training_log(log, metrics=["map@0.5", "f1"])) == {"map@0.5", "f1"}
    other = [r | {"eval/accuracy": 0.7} for r in records(False)]
    assert drawn(plot_training_log(other)) == {"accuracy"}


def test_plot_into_a_given_axis_and_save(tmp_path):
    figure, ax = plt.subplots(figsize=(4, 3))
    assert plot_training_log(records(True), ax=ax) is figure
    plt.close(figure)
    png = save_training_curve(records(True), tmp_path / "curve" / "training_curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no epoch"):
        plot_training_log([])
