"""The main job (``make demo``): the whole system end to end on a synthetic SMG-format set, on a CPU.

1. make the synthetic set the configuration describes (skipped when it is already there);
2. decode it once into a frame cache at the model's frame rate and size (resumable);
3. train the paper's detector (Mamba-MHSA decoder on the small CPU encoder) on the training subjects;
4. the evaluation pipeline (:func:`mgtutor.eval.pipeline.evaluate_split`): the score threshold and NMS
   from the configuration, or chosen on the training subjects (or on held-out validation subjects,
   ``eval.choose_on``), the test subjects' whole sequences predicted and scored with the challenge's F1
   (organisers' rule and one-to-one) and detection-mAP;
5. write, under the output folder: ``results.md`` / ``results.json`` (the figures), ``config.yaml``, ``training_curve.png``,
   ``timeline.png`` (detections against ground truth), ``trajectories.png`` (query points through the
   decoder layers), ``predictions/`` (one ``SampleXXXX_finelabels.csv`` a test sequence) and the
   checkpoints.

An interrupted demo continues where it stopped: the data steps skip finished work and training resumes
from the last finished epoch.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from mgtutor.config import Config, save_config
from mgtutor.data.smg import sample_name
from mgtutor.files import check_output_folder, write_atomic


def _with_paths(cfg: Config, out: Path) -> Config:
    """``cfg`` with its synthetic set, cache and training output placed under ``out`` unless set."""
    data = cfg.data
    if data.root is None and data.cache is None:
        data = dataclasses.replace(data, cache=str(Path(data.synthetic_dir).with_name(Path(data.synthetic_dir).name + "_cache")))
    train = dataclasses.replace(cfg.train, out=str(out / "train"))
    return dataclasses.replace(cfg, data=data, train=train)


def _step(message: str) -> float:
    print(f"== {message}", flush=True)
    return time.perf_counter()


def _plot_trajectories(model: torch.nn.Module, cfg: Config, sequences, path: Path, class_names) -> Path:
    """Query points through the decoder layers for the four highest-scoring queries of the test window
    holding the most gestures, over that window's ground truth."""
    import matplotlib.pyplot as plt

    from mgtutor.data.dataset import collate
    from mgtutor.eval.inference import prediction_windows
    from mgtutor.viz.model import plot_query_points

    dataset = prediction_windows(sequences, cfg)
    counts = [len(dataset[i]["labels"]) for i in range(len(dataset))]
    index = max(range(len(dataset)), key=lambda i: (counts[i], -i))
    item = collate([dataset[index]])
    key = "features" if "features" in item else "clip"
    model.eval()
    with torch.no_grad():
        output = model(item[key].to(next(model.parameters()).device))
    probs = output.logits[-1, 0].softmax(-1)[:, :-1]
    best = probs.max(-1).values.argsort(descending=True)[:4].tolist()
    fig, axes = plt.subplots(2, 2, figsize=(14, 7.5), constrained_layout=True)
    target = {"segments": item["segments"][0], "labels": item["labels"][0]}
    for ax, query in zip(axes.flat, best):
        plot_query_points(output, query, target=target, class_names=class_names, window_frames=cfg.data.window_frames, ax=ax)
    meta = item["meta"][0]
    fig.suptitle(f"Query points through the decoder layers: {sample_name(meta['sequence'])}, window from sampled frame {meta['start']}")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _results_table(figures: dict[str, Any], info: dict[str, Any]) -> str:
    rows = [
        ("F1 (organisers' rule, alpha 0.3)", f"{figures['f1']:.4f}"),
        ("precision / recall", f"{figures['precision']:.4f} / {figures['recall']:.4f}"),
        ("F1 (one-to-one)", f"{figures['strict_f1']:.4f}"),
        ("correct / predictions / ground truth", f"{figures['correct']} / {figures['predictions']} / {figures['ground_truth']}"),
        ("detection-mAP (tIoU 0.1:0.9)", f"{figures.get('map', float('nan')):.4f}"),
        *((f"mAP@{t}", f"{figures[f'map@{t}']:.4f}") for t in ("0.3", "0.5", "0.7") if f"map@{t}" in figures),
        ("score threshold / NMS", f"{info['score_threshold']:g} / {info['nms']}"),
        ("training time", f"{info['train_seconds'] / 60:.1f} min ({info['epochs']} epochs, {info['steps']} steps)"),
        ("total time", f"{info['total_seconds'] / 60:.1f} min"),
        ("machine", info["machine"]),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'figure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|-------|"]
    lines += [f"| {k.ljust(width)} | {v} |" for k, v in rows]
    return "\n".join(lines)


def run_demo(cfg: Config, out: str | Path, progress: bool = True) -> dict[str, Any]:
    """Run the five steps above into ``out``; return the test figures and run information.

    Step 4 is :func:`mgtutor.eval.pipeline.evaluate_split` with ``cfg`` as given: a set
    ``eval.score_threshold`` (and ``eval.nms_iou``) is used, otherwise both are chosen on the
    ``eval.choose_on`` split. ``config.yaml`` is written with the results, so it is the configuration
    that made them.
    """
    from mgtutor.data.cache import prepare_cache
    from mgtutor.data.synthetic import configured_root
    from mgtutor.eval.inference import load_model
    from mgtutor.eval.pipeline import class_names, evaluate_split
    from mgtutor.train.engine import LAST, train
    from mgtutor.viz.detections import save_detections_plot
    from mgtutor.viz.training import save_training_curve

    out = check_output_folder(out, "the demo's results")
    cfg = _with_paths(cfg, out)
    start = time.perf_counter()

    t = _step("1/5 synthetic SMG-format set" if cfg.data.root is None else f"1/5 data root {cfg.data.root}")
    root = configured_root(cfg.data)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=str(root)))
    print(f"   {root} ({time.perf_counter() - t:.0f} s)")

    t = _step(f"2/5 frame cache at {cfg.data.fps:g} fps, short side {cfg.data.short_side} px")
    if cfg.data.cache:
        prepare_cache(root, cfg.data.cache, fps=cfg.data.fps, short_side=cfg.data.short_side, progress=progress)
    print(f"   {cfg.data.cache} ({time.perf_counter() - t:.0f} s)")

    t = _step(f"3/5 training ({cfg.train.epochs} epochs) into {cfg.train.out}")
    resume = (Path(cfg.train.out) / LAST).exists()
    if resume:
        print("   continuing the interrupted run from its last finished epoch")
    trainer = train(cfg, resume=resume, progress=progress)
    train_seconds = time.perf_counter() - t
    save_training_curve(trainer.history, out / "training_curve.png")
    print(f"   {trainer.epoch} epochs, {trainer.global_step} steps ({train_seconds / 60:.1f} min)")

    t = _step("4/5 prediction and evaluation on the test subjects")
    model, _ = load_model(Path(cfg.train.out) / LAST, "cpu")  # the run's configuration, its eval section included
    result = evaluate_split(model, cfg, "test", root=root, out=out / "predictions")
    print(f"   {result.postprocessing.summary()} ({time.perf_counter() - t:.0f} s)")

    _step("5/5 plots")
    names = class_names(root)
    fps = result.sequences[0].fps if result.sequences else None
    save_detections_plot(out / "timeline.png", result.detections, result.truth, fps=fps, class_names=names)
    _plot_trajectories(model, cfg, result.sequences, out / "trajectories.png", names)

    post = result.postprocessing
    info = {
        "score_threshold": post.score_threshold,
        "nms": "none" if post.nms_iou is None else f"tIoU {post.nms_iou:g}",
        "postprocessing": post.describe(),
        "epochs": trainer.epoch,
        "steps": trainer.global_step,
        "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - start,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    figures = result.figures
    table = _results_table(figures, info)
    save_config(cfg, out / "config.yaml")
    write_atomic(out / "results.md", f"# mgtutor demo: test subjects {cfg.data.test_subjects}\n\n{table}\n")
    write_atomic(out / "results.json", json.dumps({"figures": figures, "info": info}, indent=2))
    print(table)
    print(f"\nwrote {out}/: results.md, results.json, config.yaml, training_curve.png, timeline.png, trajectories.png, predictions/")
    return {"figures": figures, "info": info}
