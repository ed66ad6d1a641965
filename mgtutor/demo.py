"""The main job (``make demo``): the whole system end to end on a synthetic SMG-format set, on a CPU.

1. make the synthetic set the configuration describes (skipped when it is already there);
2. decode it once into a frame cache at the model's frame rate and size (resumable);
3. train the paper's detector (Mamba-MHSA decoder on the small CPU encoder) on the training subjects;
4. choose the score threshold and NMS on the training subjects, predict the test subjects' whole
   sequences and score them with the challenge's F1 (organisers' rule and one-to-one) and detection-mAP;
5. write, under the output folder: ``results.md`` / ``results.json`` (the figures), ``training_curve.png``,
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
    from mgtutor.eval.predict import prediction_windows
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
    fig.suptitle(f"Query points through the decoder layers: Sample{meta['sequence']:04d}, window from sampled frame {meta['start']}")
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
    """Run the five steps above into ``out``; return the test figures and run information."""
    from mgtutor.data.cache import prepare_cache
    from mgtutor.data.smg import load_root
    from mgtutor.data.synthetic import ensure_synthetic
    from mgtutor.eval.predict import (
        apply_postprocessing,
        choose_postprocessing,
        class_names,
        describe_postprocessing,
        evaluate_predictions,
        ground_truth,
        load_model,
        postprocessing_settings,
        predict_sequences,
        write_predictions,
    )
    from mgtutor.train.engine import train
    from mgtutor.viz.detections import save_detections_plot
    from mgtutor.viz.training import save_training_curve

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = _with_paths(cfg, out)
    save_config(cfg, out / "config.yaml")
    start = time.perf_counter()

    t = _step("1/5 synthetic SMG-format set" if cfg.data.root is None else f"1/5 data root {cfg.data.root}")
    root = Path(cfg.data.root) if cfg.data.root is not None else ensure_synthetic(cfg.data)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=str(root)))
    print(f"   {root} ({time.perf_counter() - t:.0f} s)")

    t = _step(f"2/5 frame cache at {cfg.data.fps:g} fps, short side {cfg.data.short_side} px")
    if cfg.data.cache:
        prepare_cache(root, cfg.data.cache, fps=cfg.data.fps, short_side=cfg.data.short_side, progress=progress)
    print(f"   {cfg.data.cache} ({time.perf_counter() - t:.0f} s)")

    t = _step(f"3/5 training ({cfg.train.epochs} epochs) into {cfg.train.out}")
    resume = (Path(cfg.train.out) / "last.pt").exists()
    if resume:
        print("   continuing the interrupted run from its last finished epoch")
    trainer = train(cfg, resume=resume, progress=progress)
    train_seconds = time.perf_counter() - t
    save_training_curve(trainer.history, out / "training_curve.png")
    print(f"   {trainer.epoch} epochs, {trainer.global_step} steps ({train_seconds / 60:.1f} min)")

    t = _step("4/5 prediction and evaluation on the test subjects")
    model, cfg = load_model(Path(cfg.train.out) / "last.pt", "cpu")
    train_sequences = load_root(root, cfg.data.train_subjects)
    test_sequences = load_root(root, cfg.data.test_subjects)
    selection = choose_postprocessing(model, train_sequences, cfg)
    raw = predict_sequences(model, test_sequences, cfg)
    detections = apply_postprocessing(raw, selection)
    truth = ground_truth(test_sequences)
    figures = evaluate_predictions(detections, truth, cfg.eval, cfg.model.num_classes)
    write_predictions(out / "predictions", detections, describe_postprocessing(selection), {"split": "test", "root": str(root)})
    print(f"   ({time.perf_counter() - t:.0f} s)")

    _step("5/5 plots")
    names = class_names(root)
    save_detections_plot(out / "timeline.png", detections, truth, fps=test_sequences[0].fps if test_sequences else None, class_names=names)
    _plot_trajectories(model, cfg, test_sequences, out / "trajectories.png", names)

    threshold, nms_iou = postprocessing_settings(selection)
    info = {
        "score_threshold": threshold,
        "nms": "none" if nms_iou is None else f"tIoU {nms_iou:g}",
        "epochs": trainer.epoch,
        "steps": trainer.global_step,
        "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - start,
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
    }
    table = _results_table(figures, info)
    (out / "results.md").write_text(f"# mgtutor demo: test subjects {cfg.data.test_subjects}\n\n{table}\n")
    (out / "results.json").write_text(json.dumps({"figures": figures, "info": info}, indent=2))
    print(table)
    print(f"\nwrote {out}/: results.md, results.json, training_curve.png, timeline.png, trajectories.png, predictions/")
    return {"figures": figures, "info": info}
