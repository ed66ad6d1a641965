"""Quality: does the detector learn what the paper says? Self-attention against Mamba-MHSA over seeds,
and the shape of the paper's Table 2 ablations.

    python benchmarks/quality.py                          # the CPU benchmark on a hard synthetic set
    python benchmarks/quality.py --quick                  # tiny set, tiny model, 2 steps a run (what the tests run)
    python benchmarks/quality.py --only main              # (1) only; --only ablations for (2), --only threshold for (3)
    python benchmarks/quality.py --root /path/to/SMG --config configs/smg_paper.yaml \\
        --set data.cache=data/smg_cache --out runs/quality_smg    # the same protocol on SMG, on a GPU

(1) Main comparison: PointTAD's self-attention decoder (``model.mamba_blocks=0``) and the paper's
    Mamba-MHSA decoder (``model.mamba_blocks=2``), seeds 0, 1, 2 (``train.seed``) each; the test
    subjects' F1 (the organisers' rule, alpha 0.3), the strict one-to-one F1 and detection-mAP
    (tIoU 0.1:0.9), as mean +- sample standard deviation over the seeds.
(2) Ablations, the paper's Table 2 (docs/reference.md, section 4), one seed (0) a value, Mamba-MHSA otherwise as
    in (1): query points 25/27/30/31/32/35, window 16/32/64/128/200 frames (all multiples of 4, the
    encoder's stride, as mgtutor requires: 200 frames give 50 feature steps), decoder layers 2/3/4/5,
    Mamba blocks 1/2/3. A run whose configuration equals another's (e.g. 30 points at the base's 30)
    is trained once and shared.
(3) Where the score threshold and NMS are chosen, seeds 0, 1, 2, Mamba-MHSA otherwise as in (1): the
    last ``--val-subjects`` training subjects (default :data:`VAL_SUBJECTS`) are held out of training
    (``data.val_subjects``) and the post-processing is chosen on them (``eval.choose_on=val``); the same
    model is also scored with the choice made on the subjects it was trained on (``train_choice`` in
    its result), so the two choices differ in nothing else. (1)'s Mamba-MHSA runs, trained on every
    training subject with the choice made on them, are the third point of comparison.

Every run follows the demo's recipe (:mod:`mgtutor.demo`): :func:`mgtutor.train.engine.train` on the
training subjects, then the evaluation pipeline (:func:`mgtutor.eval.pipeline.evaluate_split`): the
score threshold and NMS chosen on the **training** subjects (or, in (3), the held-out ones), the test
subjects predicted and scored. The final weights are scored (no checkpoint is picked on the test
split).

Data. Without ``--root``: a synthetic SMG-format set of :data:`SUBJECTS` subjects at the ``hard``
difficulty of :data:`mgtutor.data.synthetic.LEVELS` (smaller motions, thin limbs and bare hands, more
co-occurring and back-to-back gestures, more varied subjects than the demo's set), split by
:func:`mgtutor.data.synthetic.split_subjects`: subjects 1-42 train, 43-48 test; its length, frame size
and frame rate, the model and the training recipe come from ``--config`` (default
``configs/cpu_demo.yaml``, the CPU demo's configuration, read at run time). With ``--root``: that SMG
root and the configuration's own split.

Budget. ``--steps`` optimiser steps a run (default :data:`CPU_STEPS` on a synthetic set, the
configuration's whole schedule on a real root); the configuration's learning-rate schedule is
compressed to the budget (as many epochs as the budget needs, halvings at the same fractions of the
run). Each run writes ``runs/<name>/result.json`` as it finishes; a rerun skips finished runs and
continues an interrupted one from its last finished epoch. The report is ``quality.md``,
``quality.json`` and ``ablations.png`` (one panel an ablation: this benchmark's F1 against the paper's
on a twin axis).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import machine_line  # noqa: E402

from mgtutor.config import Config, load_config, save_config  # noqa: E402
from mgtutor.files import write_atomic  # noqa: E402
from mgtutor.runtime import default_device  # noqa: E402

CPU_STEPS = 600  # optimiser steps a run on the CPU: a third of the CPU demo's schedule, so 20 runs fit an hour in two processes
SUBJECTS = 48  # synthetic subjects (one sequence each); split_subjects gives 1-42 train, 43-48 test
SEEDS = (0, 1, 2)
DECODERS = {"attention": 0, "mamba": 2}  # name -> model.mamba_blocks
DECODER_NAMES = {"attention": "PointTAD self-attention (N_m = 0)", "mamba": "Mamba-MHSA (N_m = 2)"}
REFERENCE = ("model.mamba_blocks=2", f"train.seed={SEEDS[0]}")  # what every ablation run starts from
VAL_SUBJECTS = 6  # training subjects (3) holds out to choose the post-processing on: as many as test subjects
QUICK_VAL_SUBJECTS = 1
QUICK_SUBJECTS = 4  # split_subjects gives 1-3 train, 4 test
QUICK = (  # a tiny set, model and budget: the whole pipeline in well under a minute
    "data.synthetic_seconds=20", "data.synthetic_size=40", "data.short_side=40",
    "data.crop=32", "data.window=32", "data.num_workers=0", "model.encoder=small", "model.hidden=32",
    "model.queries=8", "model.heads=4", "model.ffn=64", "model.mix_dim=8", "model.layers=2", "train.batch_size=2",
)  # fmt: skip
QUICK_STEPS = 2
# paths and bookkeeping that may differ between two runs of the same experiment
_NOT_COMPARED = {("data", "root"), ("data", "cache"), ("data", "features"), ("data", "synthetic_dir"), ("train", "out")}


@dataclass(frozen=True)
class Ablation:
    """One part of the paper's Table 2: the configuration key it varies and the paper's F1 (%) a value."""

    name: str
    key: str
    label: str
    paper: dict[int, float]

    @property
    def paper_best(self) -> int:
        return max(self.paper, key=self.paper.get)


ABLATIONS = (
    Ablation("points", "model.points", "query points", {25: 11.33, 27: 13.48, 30: 14.34, 31: 13.49, 32: 13.43, 35: 9.81}),
    Ablation("window", "data.window", "window (frames)", {16: 7.33, 32: 8.45, 64: 9.27, 128: 14.34, 200: 7.95}),
    Ablation("layers", "model.layers", "decoder layers", {2: 8.3, 3: 11.96, 4: 14.34, 5: 10.01}),
    Ablation("mamba_blocks", "model.mamba_blocks", "Mamba blocks N_m", {1: 8.42, 2: 14.34, 3: 9.22}),
)  # fmt: skip


@dataclass
class Run:
    """One training run: its folder name, its configuration and the table cells it fills."""

    name: str
    config: Config
    cells: list[tuple[str, ...]]  # ("main", decoder, seed) and/or ("ablation", name, value)


# -- the plan --------------------------------------------------------------------------------------------


def base_overrides(out: Path, root: str | None, quick: bool) -> list[str]:
    """What the benchmark sets on top of the configuration file: the hard synthetic set and its split
    (or the real root), and in quick mode the tiny set and model."""
    tiny = list(QUICK) if quick else []
    if root is not None:
        return [f"data.root={root}", *tiny]
    from mgtutor.data.synthetic import split_subjects

    sequences = QUICK_SUBJECTS if quick else SUBJECTS
    train_subjects, test_subjects = split_subjects(sequences)
    data = out / "data"
    return [
        "data.root=null", f"data.synthetic_dir={data / 'synthetic_hard'}", f"data.cache={data / 'synthetic_hard_cache'}",
        f"data.synthetic_sequences={sequences}", "data.synthetic_difficulty=hard",
        f"data.train_subjects={train_subjects}", f"data.test_subjects={test_subjects}", *tiny,
    ]  # fmt: skip


def run_name(cfg: Config) -> str:
    """The folder of a run, from the values this benchmark varies: equal names, equal experiments."""
    m = cfg.model
    held_out = f"-val{len(cfg.data.val_subjects)}" if cfg.data.val_subjects else ""
    return f"nm{m.mamba_blocks}-points{m.points}-window{cfg.data.window}-layers{m.layers}-seed{cfg.train.seed}{held_out}"


def held_out(config_file: str | None, overrides: Sequence[str], count: int) -> list[str]:
    """(3)'s own overrides: the last ``count`` training subjects held out, the choice made on them."""
    train = load_config(config_file, list(overrides)).data.train_subjects
    if not 0 < count < len(train):
        raise SystemExit(f"--val-subjects must lie between 1 and {len(train) - 1} (the training subjects less one), got {count}")
    return [f"data.val_subjects={train[-count:]}", "eval.choose_on=val"]


def plan(
    config_file: str | None,
    overrides: Sequence[str],
    only: str,
    ablations: Sequence[Ablation] = ABLATIONS,
    val_subjects: int = VAL_SUBJECTS,
) -> list[Run]:
    """The runs of (1), (2) and/or (3), in order, each configuration once; ``overrides`` come before each
    run's own (the decoder, the seed, the ablated value, the held-out subjects)."""
    runs: dict[str, Run] = {}

    def add(cell: tuple, own: Sequence[str]) -> None:
        cfg = load_config(config_file, [*overrides, *own])
        name = run_name(cfg)
        runs.setdefault(name, Run(name, cfg, [])).cells.append(cell)

    if only in ("all", "main"):
        for decoder, blocks in DECODERS.items():
            for seed in SEEDS:
                add(("main", decoder, seed), [f"model.mamba_blocks={blocks}", f"train.seed={seed}"])
    if only in ("all", "ablations"):
        for ablation in ablations:
            for value in ablation.paper:
                add(("ablation", ablation.name, value), [*REFERENCE, f"{ablation.key}={value}"])
    if only in ("all", "threshold"):
        validation = held_out(config_file, overrides, val_subjects)
        for seed in SEEDS:
            add(("threshold", "val", seed), [f"model.mamba_blocks={DECODERS['mamba']}", f"train.seed={seed}", *validation])
    return list(runs.values())


def budget(cfg: Config, steps: int | None, train_windows: int) -> Config:
    """``cfg`` trained for ``steps`` optimiser steps with its learning-rate schedule compressed to them:
    enough epochs to take the steps, a halving every ``lr_step * epochs / train.epochs`` of them (at least
    one). ``steps`` None keeps the configuration's schedule."""
    if steps is None:
        return cfg
    if steps <= 0:
        raise ValueError(f"the step budget must be positive, got {steps}")
    per_epoch = max(1, math.ceil(train_windows / cfg.train.batch_size))  # 0 windows: training says so
    epochs = math.ceil(steps / per_epoch)
    lr_step = max(1, round(cfg.train.lr_step * epochs / cfg.train.epochs))
    train = dataclasses.replace(cfg.train, epochs=epochs, lr_step=lr_step, max_steps=steps)
    return dataclasses.replace(cfg, train=train)


def comparable(values: dict[str, Any]) -> dict[str, Any]:
    """A configuration dict without the paths that may differ between runs of one experiment."""
    return {s: {k: v for k, v in keys.items() if (s, k) not in _NOT_COMPARED} for s, keys in values.items()}


# -- one run ---------------------------------------------------------------------------------------------


def _write_json(path: Path, value: Any) -> None:
    write_atomic(path, json.dumps(value, indent=1) + "\n")


def execute(run: Run, folder: Path, device: torch.device, keep_checkpoints: bool) -> dict[str, Any]:
    """Train ``run`` into ``folder/train`` (continuing an interrupted run), then score the test subjects
    with the evaluation pipeline (post-processing as the run's ``eval`` says; with held-out subjects
    also with the choice made on the trained subjects); write and return ``folder/result.json``."""
    from mgtutor.eval.inference import load_model
    from mgtutor.eval.pipeline import evaluate_split
    from mgtutor.train.engine import LAST, NonFiniteLossError, train

    cfg = dataclasses.replace(run.config, train=dataclasses.replace(run.config.train, out=str(folder / "train")))
    resume = (folder / "train" / LAST).exists()
    if not resume:  # a run stopped before its first checkpoint starts afresh
        shutil.rmtree(folder / "train", ignore_errors=True)
    try:
        trainer = train(cfg, resume=resume, progress=False, device=device)
    except NonFiniteLossError as err:  # the paper saw this with N_m > 2: a result, not a crash
        result = {"name": run.name, "diverged": str(err), "steps": err.step, "config": cfg.to_dict()}
        _write_json(folder / "result.json", result)
        return result
    start = time.perf_counter()
    model, cfg = load_model(folder / "train" / LAST, device)
    evaluation = evaluate_split(model, cfg, "test")
    result = {
        "name": run.name,
        "figures": evaluation.figures,
        "postprocessing": evaluation.postprocessing.describe(),
        "steps": trainer.global_step,
        "epochs": trainer.epoch,
        "final_loss": trainer.history[-1].get("loss/total") if trainer.history else None,
        "train_seconds": sum(record["time"] for record in trainer.history),
        "eval_seconds": time.perf_counter() - start,
        "load_average": list(os.getloadavg()),
        "threads": torch.get_num_threads(),
        "device": str(device),
        "config": cfg.to_dict(),
    }  # fmt: skip
    if cfg.data.val_subjects:  # (3): the same model and test detections, the choice made on the trained subjects
        on_train = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, choose_on="train"))
        again = evaluate_split(model, on_train, "test", sequences=evaluation.sequences, raw=evaluation.raw)
        result["train_choice"] = {"figures": again.figures, "postprocessing": again.postprocessing.describe()}
        result["eval_seconds"] = time.perf_counter() - start
    _write_json(folder / "result.json", result)
    if not keep_checkpoints:
        (folder / "train" / LAST).unlink(missing_ok=True)
    return result


def finished(run: Run, folder: Path) -> dict[str, Any] | None:
    """The stored result of ``run``, or None; refuses a result made with another configuration."""
    path = folder / "result.json"
    if not path.exists():
        return None
    result = json.loads(path.read_text())
    if comparable(result["config"]) != comparable(run.config.to_dict()):
        changed = [
            f"{s}.{k}: {v!r} then, {getattr(getattr(run.config, s), k)!r} now"
            for s, keys in comparable(result["config"]).items()
            for k, v in keys.items()
            if getattr(getattr(run.config, s), k) != v
        ]
        raise SystemExit(f"{path} was made with another configuration ({'; '.join(changed[:3])}); choose another --out")
    return result


# -- the report ------------------------------------------------------------------------------------------

FIGURES = ("f1", "strict_f1", "map")


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; 0 for a single value)."""
    values = list(values)
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rank correlation (ties share their mean rank); NaN for fewer than 3 pairs or a
    constant sequence, where it is undefined."""
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def _threshold_summary(cells: dict[tuple, dict], main: dict[str, dict]) -> dict[str, Any]:
    """(3): each way of choosing the post-processing, its test figures and chosen thresholds over seeds."""
    found = {seed: cells[("threshold", "val", seed)] for seed in SEEDS if ("threshold", "val", seed) in cells}
    scored = {seed: r for seed, r in found.items() if "figures" in r}
    if not found:
        return {}
    choices = {
        "val": [(r["figures"], r["postprocessing"]) for r in scored.values()],
        "train": [(r["train_choice"]["figures"], r["train_choice"]["postprocessing"]) for r in scored.values() if "train_choice" in r],
    }
    summary: dict[str, Any] = {"seeds": list(scored), "diverged": [seed for seed in found if seed not in scored]}
    for choice, pairs in choices.items():
        if not pairs:
            continue
        summary[choice] = {"thresholds": [post["score_threshold"] for _, post in pairs]}
        for key in FIGURES:
            values = [figures.get(key, float("nan")) for figures, _ in pairs]
            summary[choice][key] = dict(zip(("mean", "std"), mean_std(values))) | {"values": values}
    if "f1" in main.get("mamba", {}):
        summary["all_subjects"] = {key: main["mamba"][key] for key in FIGURES}
    return summary


def summarise(runs: Sequence[Run], results: dict[str, dict], ablations: Sequence[Ablation] = ABLATIONS) -> dict[str, Any]:
    """The tables' figures (fractions, not percent) from the runs' results; runs without a result are
    left out, diverged runs are marked and kept out of means and correlations."""
    cells = {cell: results[run.name] for run in runs if run.name in results for cell in run.cells}
    main: dict[str, dict] = {}
    for decoder in DECODERS:
        found = {seed: cells[("main", decoder, seed)] for seed in SEEDS if ("main", decoder, seed) in cells}
        scored = {seed: r for seed, r in found.items() if "figures" in r}
        if not found:
            continue
        entry: dict[str, Any] = {"seeds": list(scored), "diverged": [seed for seed in found if seed not in scored]}
        if scored:
            for key in FIGURES:
                values = [r["figures"].get(key, float("nan")) for r in scored.values()]
                entry[key] = dict(zip(("mean", "std"), mean_std(values))) | {"values": values}
            entry["seconds"] = statistics.fmean(r["train_seconds"] + r["eval_seconds"] for r in scored.values())
        main[decoder] = entry
    tables: dict[str, dict] = {}
    for ablation in ablations:
        rows: dict[int, dict] = {}
        for value, paper in ablation.paper.items():
            result = cells.get(("ablation", ablation.name, value))
            if result is None:
                continue
            figures = result.get("figures")
            rows[value] = {"paper_f1": paper / 100} | ({k: figures.get(k, float("nan")) for k in FIGURES} if figures else {"diverged": True})
        if not rows:
            continue
        scored = [v for v, row in rows.items() if not row.get("diverged")]
        tables[ablation.name] = {
            "key": ablation.key, "label": ablation.label, "rows": rows, "paper_best": ablation.paper_best,
            "best": max(scored, key=lambda v: rows[v]["f1"]) if scored else None,
            "spearman": spearman([rows[v]["f1"] for v in scored], [rows[v]["paper_f1"] for v in scored]),
        }  # fmt: skip
    return {"main": main, "ablations": tables, "threshold": _threshold_summary(cells, main)}


def _pm(entry: dict) -> str:
    return f"{entry['mean'] * 100:.1f} +- {entry['std'] * 100:.1f}"


def format_main(main: dict[str, dict]) -> str:
    """Markdown: each decoder's figures as mean +- standard deviation over seeds, in percent."""
    lines = [
        "| decoder | F1 (official) | F1 (one-to-one) | detection-mAP | F1 by seed | time a run |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for decoder, entry in main.items():
        if "f1" not in entry:
            lines.append(f"| {DECODER_NAMES[decoder]} | diverged | diverged | diverged | seeds {entry['diverged']} diverged | - |")
            continue
        seeds = ", ".join(f"{v * 100:.1f}" for v in entry["f1"]["values"]) + "".join(f", seed {s} diverged" for s in entry["diverged"])
        lines.append(
            f"| {DECODER_NAMES[decoder]} | {_pm(entry['f1'])} | {_pm(entry['strict_f1'])} | {_pm(entry['map'])} "
            f"| {seeds} | {entry['seconds'] / 60:.1f} min |"
        )
    return "\n".join(lines)


def format_threshold(threshold: dict[str, Any]) -> str:
    """Markdown: (3)'s ways of choosing the score threshold and NMS, mean +- standard deviation over
    seeds in percent, with the thresholds chosen."""
    rows = [
        ("all_subjects", "training subjects (trained on every training subject: (1)'s Mamba-MHSA runs)"),
        ("train", "training subjects (trained without the held-out ones)"),
        ("val", "held-out validation subjects"),
    ]
    lines = ["| chosen on | F1 (official) | F1 (one-to-one) | detection-mAP | thresholds by seed |", "|---|---:|---:|---:|---|"]
    for key, label in rows:
        if key in threshold:
            entry = threshold[key]
            chosen = ", ".join(f"{t:g}" for t in entry.get("thresholds", [])) or "-"
            lines.append(f"| {label} | {_pm(entry['f1'])} | {_pm(entry['strict_f1'])} | {_pm(entry['map'])} | {chosen} |")
    return "\n".join(lines)


def format_ablations(tables: dict[str, dict]) -> str:
    """Markdown: every ablated value's figures beside the paper's F1, then the best values and the rank
    correlation per ablation."""
    lines = [
        "| ablation | value | F1 (official) | F1 (one-to-one) | detection-mAP | paper F1 (SMG) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for table in tables.values():
        for value, row in table["rows"].items():
            paper = f"{row['paper_f1'] * 100:.2f}{' (best)' if value == table['paper_best'] else ''}"
            if row.get("diverged"):
                lines.append(f"| {table['label']} | {value} | diverged | diverged | diverged | {paper} |")
                continue
            best = " (best)" if value == table["best"] else ""
            lines.append(
                f"| {table['label']} | {value} | {row['f1'] * 100:.1f}{best} | {row['strict_f1'] * 100:.1f} "
                f"| {row['map'] * 100:.1f} | {paper} |"
            )
    lines += ["", "| ablation | best value here | paper's best | rank correlation with the paper (Spearman) |", "|---|---:|---:|---:|"]
    for table in tables.values():
        lines.append(f"| {table['label']} | {table['best']} | {table['paper_best']} | {table['spearman']:.2f} |")
    return "\n".join(lines)


def plot_ablations(tables: dict[str, dict], path: Path, noise: float | None = None) -> Path:
    """One panel an ablation: this benchmark's F1 (left axis) and the paper's (right axis) by value;
    ``noise`` (the Mamba-MHSA runs' standard deviation over seeds) as an error bar on every point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(2, len(tables))
    rows = math.ceil(len(tables) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 3.6 * rows), constrained_layout=True, squeeze=False)
    for ax in axes.flat[len(tables):]:
        ax.set_visible(False)
    for ax, table in zip(axes.flat, tables.values()):
        values = list(table["rows"])
        x = list(range(len(values)))
        ours = [table["rows"][v].get("f1", float("nan")) * 100 for v in values]  # a diverged run leaves a gap
        paper = [table["rows"][v]["paper_f1"] * 100 for v in values]
        yerr = None if noise is None else noise * 100
        ax.errorbar(x, ours, yerr=yerr, marker="o", color="C0", capsize=3, label="synthetic, this benchmark (left axis)")
        ax.set_xticks(x, [str(v) for v in values])
        ax.set_xlabel(table["label"])
        ax.set_ylabel("synthetic test F1 (%)", color="C0")
        twin = ax.twinx()
        twin.plot(x, paper, marker="s", linestyle="--", color="C1", label="paper, SMG (right axis)")
        twin.set_ylabel("paper's F1 on SMG (%)", color="C1")
        rho = table["spearman"]
        ax.set_title(table["label"] + ("" if math.isnan(rho) else f": Spearman {rho:.2f}"))
    handles = [h for a in (axes.flat[0], fig.axes[-1]) for h in a.get_legend_handles_labels()[0]]
    fig.legend(handles, [h.get_label() for h in handles], loc="outside lower center", ncols=2)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(out: Path, document: dict[str, Any]) -> str:
    """``quality.md`` (and ``ablations.png`` when there are ablations) from ``quality.json``'s document;
    returns the markdown."""
    parts = [
        "# Quality",
        f"`{document['command']}`",
        f"Machine: {document['machine']}. Base configuration: {document['config']}; "
        f"{document['steps'] or 'the configuration schedule of'} optimiser steps a run; train subjects "
        f"{document['split']['train']}, test subjects {document['split']['test']}; "
        f"{document['seconds'] / 3600:.2f} h of training and evaluation.",
    ]
    if document["main"]:
        parts.append(f"Seeds {', '.join(map(str, SEEDS))}; mean +- sample standard deviation, in percent.\n\n" + format_main(document["main"]))
    if document["ablations"]:
        parts.append(
            f"Ablations: each row changes one value of the reference run {document['reference']}, seed {SEEDS[0]}.\n\n"
            + format_ablations(document["ablations"])
        )
        noise = document["main"].get("mamba", {}).get("f1", {}).get("std")
        plot_ablations(document["ablations"], out / "ablations.png", noise)
    if document.get("threshold"):
        parts.append(
            f"Where the score threshold and NMS are chosen (seeds {', '.join(map(str, document['threshold']['seeds']))}; "
            f"held out: data.val_subjects {document.get('val_subjects')}); mean +- sample standard deviation, in percent.\n\n"
            + format_threshold(document["threshold"])
        )
    if document.get("pending"):
        parts.append("Not yet run (another --shard's; rerun without --shard once they finish):\n\n" + "\n".join(f"- {name}" for name in document["pending"]))
    if document["failed"]:
        parts.append("Failed runs (rerun to retry):\n\n" + "\n".join(f"- {name}: {why}" for name, why in document["failed"].items()))
    text = "\n\n".join(parts) + "\n"
    (out / "quality.md").write_text(text)
    return text


# -- the command -----------------------------------------------------------------------------------------


def prepare_data(cfg: Config, progress: bool) -> Path:
    """The root: the synthetic set the configuration describes (written unless there) or ``data.root``;
    its frame cache is written too when ``data.cache`` is set (resumable)."""
    from mgtutor.data.cache import prepare_cache
    from mgtutor.data.synthetic import configured_root

    root = configured_root(cfg.data)
    if cfg.data.cache:
        prepare_cache(root, cfg.data.cache, fps=cfg.data.fps, short_side=cfg.data.short_side, progress=progress)
    return root


def _line(index: int, total: int, run: Run, state: str, result: dict) -> str:
    if "figures" not in result:
        return f"[{index}/{total}] {run.name}: {state}, DIVERGED at step {result['steps']}"
    figures = result["figures"]
    return (
        f"[{index}/{total}] {run.name}: {state}, F1 {figures['f1']:.4f} (one-to-one {figures['strict_f1']:.4f}), "
        f"mAP {figures.get('map', float('nan')):.4f}, {result['steps']} steps, "
        f"{(result['train_seconds'] + result['eval_seconds']) / 60:.1f} min, load {result['load_average'][0]:.1f}"
    )


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N), with 1 <= K <= N."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K/N such as 1/2, got {text!r}") from None
    if not 1 <= k <= n:
        raise argparse.ArgumentTypeError(f"expected 1 <= K <= N in K/N, got {text!r}")
    return k, n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="base configuration (default configs/cpu_demo.yaml)")
    parser.add_argument("--root", help="an SMG root: run the protocol on it (its configured split) instead of the synthetic set")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="change one configuration value (repeatable)")
    parser.add_argument("--only", choices=("all", "main", "ablations", "threshold"), default="all")
    parser.add_argument("--val-subjects", type=int, default=None,
                        help=f"(3): training subjects held out to choose the post-processing on (default {VAL_SUBJECTS}; {QUICK_VAL_SUBJECTS} with --quick)")  # fmt: skip
    parser.add_argument("--steps", type=int, help=f"optimiser steps a run (default {CPU_STEPS} on a synthetic set; the configuration's schedule with --root)")
    parser.add_argument("--quick", action="store_true", help=f"tiny set and model, {QUICK_STEPS} steps a run: a smoke test")
    parser.add_argument("--out", type=Path, default=Path("runs/quality"), help="results, data and runs (default runs/quality)")
    parser.add_argument("--threads", type=int, help="torch threads on the CPU (default: torch's choice)")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep each run's last.pt (removed once scored by default)")
    parser.add_argument(
        "--shard", type=parse_shard, default=(1, 1), metavar="K/N",
        help="train only every N-th run from the K-th (1/2 and 2/2 in two processes share the CPU's cores); "
        "the report includes whatever runs are finished, so a last run without --shard completes it",
    )  # fmt: skip
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    config_file = args.config or str(Path(__file__).resolve().parents[1] / "configs" / "cpu_demo.yaml")
    steps = QUICK_STEPS if args.quick else args.steps if args.steps is not None else None if args.root else CPU_STEPS
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    overrides = [*base_overrides(out, args.root, args.quick), *args.overrides]
    val_subjects = args.val_subjects or (QUICK_VAL_SUBJECTS if args.quick else VAL_SUBJECTS)
    runs = plan(config_file, overrides, args.only, val_subjects=val_subjects)
    device = default_device()
    machine = machine_line(device)
    print(f"machine: {machine}\nbase configuration: {config_file}; {len(runs)} runs into {out / 'runs'}", flush=True)

    start = time.perf_counter()
    root = prepare_data(runs[0].config, progress=False)
    print(f"data: {root} ({time.perf_counter() - start:.0f} s)", flush=True)

    from mgtutor.data.dataset import WindowDataset

    results: dict[str, dict] = {}
    failed: dict[str, str] = {}
    pending: list[str] = []
    shard, shards = args.shard
    for index, run in enumerate(runs, 1):
        run.config = dataclasses.replace(run.config, data=dataclasses.replace(run.config.data, root=str(root)))
        run.config = budget(run.config, steps, len(WindowDataset.from_config(run.config, "train")))
        folder = out / "runs" / run.name
        result = finished(run, folder)
        state = "already done"
        if result is None and (index - 1) % shards != shard - 1:
            pending.append(run.name)  # another shard's
            continue
        if result is None:
            cells = "; ".join(" ".join(map(str, cell)) for cell in run.cells)
            length = f"{run.config.train.max_steps} steps" if run.config.train.max_steps else f"{run.config.train.epochs} epochs"
            print(f"[{index}/{len(runs)}] {run.name} ({cells}): training {length}", flush=True)
            folder.mkdir(parents=True, exist_ok=True)
            save_config(run.config, folder / "config.yaml")
            try:
                result = execute(run, folder, device, args.keep_checkpoints)
            except (ValueError, RuntimeError) as err:  # e.g. a window no gesture fits in: the others still run
                failed[run.name] = f"{type(err).__name__}: {err}"
                print(f"[{index}/{len(runs)}] {run.name}: FAILED {failed[run.name]}", flush=True)
                continue
            state = "done"
        results[run.name] = result
        print(_line(index, len(runs), run, state, result), flush=True)

    scored = [r for r in results.values() if "figures" in r]
    document = {
        "machine": machine,
        "command": " ".join(["python benchmarks/quality.py", *(sys.argv[1:] if argv is None else argv)]),
        "config": config_file, "steps": steps, "seeds": list(SEEDS),
        "reference": run_name(load_config(config_file, [*overrides, *REFERENCE])),
        "split": {"train": runs[0].config.data.train_subjects, "test": runs[0].config.data.test_subjects},
        "val_subjects": next((r.config.data.val_subjects for r in runs if r.config.data.val_subjects), []),
        "seconds": sum(r["train_seconds"] + r["eval_seconds"] for r in scored),
        "load_average": {name: r["load_average"] for name, r in results.items() if "load_average" in r},
        **summarise(runs, results), "failed": failed, "pending": pending, "runs": results,
    }  # fmt: skip
    _write_json(out / "quality.json", document)
    print("\n" + write_report(out, document) + f"\nwrote {out}/quality.md, quality.json" + (", ablations.png" if document["ablations"] else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
