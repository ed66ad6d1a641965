"""Quality: does the detector learn what the paper says? Self-attention against Mamba-MHSA over seeds,
and the shape of the paper's Table 2 ablations.

    python benchmarks/quality.py                          # the CPU benchmark on a hard synthetic set
    python benchmarks/quality.py --quick                  # tiny set, tiny model, 2 steps a run (what the tests run)
    python benchmarks/quality.py --only main              # (1) only; ablations (2), threshold (3), initial (4), aux (5)
    python benchmarks/quality.py --only initial,aux,threshold   # several parts
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
    training subject with the choice made on them, are the third point of comparison (shared).
(4) Where the query points start (``model.initial_points``, docs/fidelity.md section 3), seeds 0, 1, 2,
    Mamba-MHSA otherwise as in (1): the middle start (the paper's, PointTAD's) against the spread start;
    the F1 and each decoder layer's auxiliary class loss at the last epoch. The arm equal to the base
    configuration is (1)'s Mamba-MHSA run (shared).
(5) Which decoder layers get auxiliary losses (``train.aux_layers``, docs/fidelity.md section 1), seeds
    0, 1, 2, Mamba-MHSA otherwise as in (1), both at :data:`AUX_BATCH` window a step (the paper's batch):
    every layer against PointTAD's zip, which at one window a step supervises layer 0 and the last only.
    At the CPU demo's 4 windows a step the two are the same run, so both arms change the batch; they
    take ``base batch / AUX_BATCH`` times the step budget, so they see as many windows as every other run.

Every run follows the demo's recipe (:mod:`mgtutor.demo`): :func:`mgtutor.train.engine.train` on the
training subjects, then the evaluation pipeline (:func:`mgtutor.eval.pipeline.evaluate_split`): the
score threshold and NMS chosen on the **training** subjects (or, in (3), the held-out ones), the test
subjects predicted and scored. The final weights are scored (no checkpoint is picked on the test
split). Runs whose configurations are equal are trained once and shared between the parts.

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
STARTS = ("middle", "spread")  # (4): model.initial_points
AUX_LAYERS = ("all", "pointtad")  # (5): train.aux_layers
AUX_BATCH = 1  # (5): windows a step, the paper's batch, where PointTAD's zip supervises layer 0 and the last only
PARTS = ("main", "ablations", "threshold", "initial", "aux")  # what --only chooses from
VAL_SUBJECTS = 6  # training subjects (3) holds out to choose the post-processing on: as many as test subjects
QUICK_VAL_SUBJECTS = 1
QUICK_SUBJECTS = 4  # split_subjects gives 1-3 train, 4 test
QUICK = (  # a tiny set, model and budget: the whole pipeline in well under a minute; 3 layers, so that
    # (5)'s PointTAD arm at one window a step leaves a layer unsupervised
    "data.synthetic_seconds=20", "data.synthetic_size=40", "data.short_side=40",
    "data.crop=32", "data.window=32", "data.num_workers=0", "model.encoder=small", "model.hidden=32",
    "model.queries=8", "model.heads=4", "model.ffn=64", "model.mix_dim=8", "model.layers=3", "train.batch_size=2",
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


def run_name(cfg: Config, base: Config | None = None) -> str:
    """The folder of a run, from the values this benchmark varies: equal names, equal experiments. The
    batch, the initial points and the auxiliary layers are named only where they differ from ``base``
    (the configuration every run starts from), so the runs of (1)-(3) keep their names."""
    m, t = cfg.model, cfg.train
    name = f"nm{m.mamba_blocks}-points{m.points}-window{cfg.data.window}-layers{m.layers}-seed{t.seed}"
    if cfg.data.val_subjects:
        name += f"-val{len(cfg.data.val_subjects)}"
    if base is not None:
        if t.batch_size != base.train.batch_size:
            name += f"-batch{t.batch_size}"
        if m.initial_points != base.model.initial_points:
            name += f"-{m.initial_points}"
        if t.aux_layers != base.train.aux_layers:
            name += f"-aux{t.aux_layers}"
    return name


def held_out(config_file: str | None, overrides: Sequence[str], count: int) -> list[str]:
    """(3)'s own overrides: the last ``count`` training subjects held out, the choice made on them."""
    train = load_config(config_file, list(overrides)).data.train_subjects
    if not 0 < count < len(train):
        raise SystemExit(f"--val-subjects must lie between 1 and {len(train) - 1} (the training subjects less one), got {count}")
    return [f"data.val_subjects={train[-count:]}", "eval.choose_on=val"]


def parse_only(text: str) -> tuple[str, ...]:
    """``--only``: ``"all"`` or a comma-separated list of :data:`PARTS` -> the parts, in :data:`PARTS` order."""
    if text == "all":
        return PARTS
    parts = [part.strip() for part in text.split(",")]
    unknown = [part for part in parts if part not in PARTS]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(f"expected 'all' or a comma-separated list of {', '.join(PARTS)}; got {text!r}")
    return tuple(part for part in PARTS if part in parts)


def plan(
    config_file: str | None,
    overrides: Sequence[str],
    only: str | Sequence[str],
    ablations: Sequence[Ablation] = ABLATIONS,
    val_subjects: int = VAL_SUBJECTS,
) -> list[Run]:
    """The runs of the parts ``only`` names (``"all"``, one of :data:`PARTS` or several), in order, each
    configuration once; ``overrides`` come before each run's own (the decoder, the seed, the ablated
    value, the held-out subjects, the start, the auxiliary layers)."""
    parts = parse_only(only) if isinstance(only, str) else tuple(only)
    base = load_config(config_file, list(overrides))
    runs: dict[str, Run] = {}
    mamba = f"model.mamba_blocks={DECODERS['mamba']}"

    def add(cell: tuple, own: Sequence[str]) -> None:
        cfg = load_config(config_file, [*overrides, *own])
        name = run_name(cfg, base)
        runs.setdefault(name, Run(name, cfg, [])).cells.append(cell)

    if "main" in parts:
        for decoder, blocks in DECODERS.items():
            for seed in SEEDS:
                add(("main", decoder, seed), [f"model.mamba_blocks={blocks}", f"train.seed={seed}"])
    if "ablations" in parts:
        for ablation in ablations:
            for value in ablation.paper:
                add(("ablation", ablation.name, value), [*REFERENCE, f"{ablation.key}={value}"])
    if "threshold" in parts:
        validation = held_out(config_file, overrides, val_subjects)
        for seed in SEEDS:
            add(("threshold", "all_subjects", seed), [mamba, f"train.seed={seed}"])
            add(("threshold", "val", seed), [mamba, f"train.seed={seed}", *validation])
    if "initial" in parts:
        for start in STARTS:
            for seed in SEEDS:
                add(("initial", start, seed), [mamba, f"train.seed={seed}", f"model.initial_points={start}"])
    if "aux" in parts:
        for layers in AUX_LAYERS:
            for seed in SEEDS:
                add(("aux", layers, seed), [mamba, f"train.seed={seed}", f"train.batch_size={AUX_BATCH}", f"train.aux_layers={layers}"])
    return list(runs.values())


def scaled_steps(steps: int | None, base_batch: int, batch: int) -> int | None:
    """The step budget of a run with ``batch`` windows a step when the runs at ``base_batch`` take
    ``steps``: as many windows seen (at least one step); None (the configuration's schedule) stays None."""
    if steps is None:
        return None
    return max(1, round(steps * base_batch / batch))


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
    also with the choice made on the trained subjects); write and return ``folder/result.json``, which
    also holds each decoder layer's class loss over the last epoch and the layers that had an auxiliary
    loss (at the run's batch size; a last, smaller batch of an epoch may have had fewer with ``pointtad``)."""
    from mgtutor.eval.inference import load_model
    from mgtutor.eval.pipeline import evaluate_split
    from mgtutor.train.engine import LAST, NonFiniteLossError, train
    from mgtutor.train.log import layer_losses
    from mgtutor.train.losses import auxiliary_layers

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
        # each decoder layer's class loss over the last epoch, layer 0 first; None for a layer without one
        "layer_class_loss": [None if math.isnan(v) else v for v in layer_losses(trainer.history, cfg.model.layers)],
        "aux_layers_supervised": auxiliary_layers(cfg.model.layers, cfg.train.batch_size, cfg.train.aux_loss, cfg.train.aux_layers),
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


def _layer_summary(scored: Sequence[dict]) -> list[dict[str, Any]]:
    """Each decoder layer's last-epoch class loss over the scored runs: mean, sample standard deviation
    and the values, layer 0 first; a layer no run supervised has mean None."""
    per_run = [r["layer_class_loss"] for r in scored if r.get("layer_class_loss")]
    if not per_run:
        return []
    layers = []
    for values in zip(*per_run):
        known = [v for v in values if v is not None]
        mean, std = mean_std(known) if known else (None, None)
        layers.append({"mean": mean, "std": std, "values": list(values)})
    return layers


def _seed_summary(found: dict[int, dict]) -> dict[str, Any]:
    """One arm over seeds: the seeds scored and diverged, each figure's mean, sample standard deviation
    and values, the mean time a run, each layer's class loss (:func:`_layer_summary`)."""
    scored = {seed: r for seed, r in found.items() if "figures" in r}
    entry: dict[str, Any] = {"seeds": list(scored), "diverged": [seed for seed in found if seed not in scored]}
    if scored:
        for key in FIGURES:
            values = [r["figures"].get(key, float("nan")) for r in scored.values()]
            entry[key] = dict(zip(("mean", "std"), mean_std(values))) | {"values": values}
        entry["seconds"] = statistics.fmean(r["train_seconds"] + r["eval_seconds"] for r in scored.values())
        entry["layer_class_loss"] = _layer_summary(list(scored.values()))
    return entry


def _arms(cells: dict[tuple, dict], part: str, arms: Sequence[str]) -> dict[str, dict]:
    """(1), (4) or (5): each arm's :func:`_seed_summary`, arms without a result left out."""
    summary = {}
    for arm in arms:
        found = {seed: cells[(part, arm, seed)] for seed in SEEDS if (part, arm, seed) in cells}
        if found:
            summary[arm] = _seed_summary(found)
    return summary


def _threshold_summary(cells: dict[tuple, dict]) -> dict[str, Any]:
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
    everyone = _arms(cells, "threshold", ["all_subjects"]).get("all_subjects", {})
    if "f1" in everyone:
        thresholds = [cells[("threshold", "all_subjects", s)]["postprocessing"].get("score_threshold") for s in everyone["seeds"]]
        summary["all_subjects"] = {key: everyone[key] for key in FIGURES} | {"thresholds": thresholds}
    return summary


def summarise(runs: Sequence[Run], results: dict[str, dict], ablations: Sequence[Ablation] = ABLATIONS) -> dict[str, Any]:
    """The tables' figures (fractions, not percent) from the runs' results; runs without a result are
    left out, diverged runs are marked and kept out of means and correlations."""
    cells = {cell: results[run.name] for run in runs if run.name in results for cell in run.cells}
    main = _arms(cells, "main", list(DECODERS))
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
    return {
        "main": main, "ablations": tables, "threshold": _threshold_summary(cells),
        "initial": _arms(cells, "initial", STARTS), "aux": _arms(cells, "aux", AUX_LAYERS),
    }  # fmt: skip


def _pm(entry: dict) -> str:
    return f"{entry['mean'] * 100:.1f} +- {entry['std'] * 100:.1f}"


START_NAMES = {"middle": "middle (the paper, PointTAD: every point at 0.5)", "spread": "spread (query i on [i/q, (i+1)/q])"}
AUX_NAMES = {"all": "every layer (`all`)", "pointtad": "PointTAD's zip (`pointtad`)"}


def format_arms(arms: dict[str, dict], names: dict[str, str], column: str = "decoder") -> str:
    """Markdown: each arm's figures as mean +- standard deviation over seeds, in percent."""
    lines = [
        f"| {column} | F1 (official) | F1 (one-to-one) | detection-mAP | F1 by seed | time a run |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for arm, entry in arms.items():
        if "f1" not in entry:
            lines.append(f"| {names[arm]} | diverged | diverged | diverged | seeds {entry['diverged']} diverged | - |")
            continue
        seeds = ", ".join(f"{v * 100:.1f}" for v in entry["f1"]["values"]) + "".join(f", seed {s} diverged" for s in entry["diverged"])
        lines.append(
            f"| {names[arm]} | {_pm(entry['f1'])} | {_pm(entry['strict_f1'])} | {_pm(entry['map'])} "
            f"| {seeds} | {entry['seconds'] / 60:.1f} min |"
        )
    return "\n".join(lines)


def format_main(main: dict[str, dict]) -> str:
    """Markdown: each decoder's figures as mean +- standard deviation over seeds, in percent."""
    return format_arms(main, DECODER_NAMES)


def format_layer_losses(arms: dict[str, dict], names: dict[str, str], column: str) -> str:
    """Markdown: each arm's per-layer class loss at the last epoch, mean +- standard deviation over seeds
    ("-" where no run supervised the layer), then the first and the last layer's values by seed."""
    depth = max((len(entry.get("layer_class_loss", [])) for entry in arms.values()), default=0)
    if depth == 0:
        return ""
    heads = [f"layer {i}" for i in range(depth - 1)] + [f"layer {depth - 1} (last)"]
    lines = [
        f"| {column} | " + " | ".join(heads) + " | layer 0 by seed | last layer by seed |",
        "|---|" + "---:|" * depth + "---|---|",
    ]
    for arm, entry in arms.items():
        layers = entry.get("layer_class_loss", [])
        cells = ["-" if layer["mean"] is None else f"{layer['mean']:.2f} +- {layer['std']:.2f}" for layer in layers]
        by_seed = [", ".join("-" if v is None else f"{v:.2f}" for v in layers[i]["values"]) if layers else "-" for i in (0, -1)]
        lines.append(f"| {names[arm]} | " + " | ".join(cells) + " | " + " | ".join(by_seed) + " |")
    return "\n".join(lines)


def format_threshold(threshold: dict[str, Any]) -> str:
    """Markdown: (3)'s ways of choosing the score threshold and NMS, mean +- standard deviation over
    seeds in percent, with the thresholds chosen."""
    rows = [
        ("all_subjects", "training subjects (trained on every training subject: (1)'s Mamba-MHSA runs)"),
        ("train", "training subjects (trained without the held-out ones)"),
        ("val", "held-out validation subjects"),
    ]
    lines = [
        "| chosen on | F1 (official) | F1 (one-to-one) | detection-mAP | F1 by seed | thresholds by seed |",
        "|---|---:|---:|---:|---|---|",
    ]
    for key, label in rows:
        if key in threshold:
            entry = threshold[key]
            chosen = ", ".join("-" if t is None else f"{t:g}" for t in entry.get("thresholds", [])) or "-"
            seeds = ", ".join(f"{v * 100:.1f}" for v in entry["f1"]["values"])
            lines.append(f"| {label} | {_pm(entry['f1'])} | {_pm(entry['strict_f1'])} | {_pm(entry['map'])} | {seeds} | {chosen} |")
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
    if document.get("initial"):
        parts.append(
            f"Where the query points start (`model.initial_points`), Mamba-MHSA, seeds {', '.join(map(str, SEEDS))}; "
            "mean +- sample standard deviation (F1 in percent), and each decoder layer's class loss over the last epoch "
            "(ln 18 = 2.89 is a uniform guess).\n\n"
            + format_arms(document["initial"], START_NAMES, "start") + "\n\n"
            + format_layer_losses(document["initial"], START_NAMES, "start")
        )
    if document.get("aux"):
        parts.append(
            f"Which decoder layers get auxiliary losses (`train.aux_layers`), Mamba-MHSA at {document['aux_batch']} "
            f"window{'s' if document['aux_batch'] != 1 else ''} a step (the other runs: {document['batch_size']}), "
            f"as many windows seen as the other runs, seeds "
            f"{', '.join(map(str, SEEDS))}; mean +- sample standard deviation (F1 in percent), each layer's class loss "
            "over the last epoch (- where the layer had no loss).\n\n"
            + format_arms(document["aux"], AUX_NAMES, "auxiliary losses on") + "\n\n"
            + format_layer_losses(document["aux"], AUX_NAMES, "auxiliary losses on")
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
    parser.add_argument("--only", type=parse_only, default=PARTS, metavar="PARTS",
                        help=f"'all' (default) or a comma-separated list of {', '.join(PARTS)}")  # fmt: skip
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
    base = load_config(config_file, overrides)
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
        own_steps = scaled_steps(steps, base.train.batch_size, run.config.train.batch_size)  # (5) at one window a step
        run.config = budget(run.config, own_steps, len(WindowDataset.from_config(run.config, "train")))
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
        "reference": run_name(load_config(config_file, [*overrides, *REFERENCE]), base),
        "batch_size": base.train.batch_size, "aux_batch": AUX_BATCH,
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
