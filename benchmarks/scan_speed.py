"""Selective-scan speed and memory on the CPU: mgtutor's chunked scan against a well-written loop,
the public reference's naive loop and mambapy's parallel scan, measured side by side in one run.

    python benchmarks/scan_speed.py                      # b=1, d=1024, n=16, l in 48 128 512 2048
    python benchmarks/scan_speed.py --quick              # a few seconds, small sizes (used by the tests)
    python benchmarks/scan_speed.py --readme benchmarks/README.md   # also write the "Scan speed" section

Times are the best of --repeats runs; peak memory is the tensor memory alive at once during forward +
backward beyond the inputs (see mgtutor.ssm.benchmark for how it is counted).

By default torch runs one thread and the clock is this process's CPU time: on a machine whose cores are
shared with other jobs, multi-threaded wall-clock timings measure the scheduler more than the scans
(every parallel region waits for a descheduled worker thread). `--threads N` uses N threads and the
wall clock instead, which is the right measurement on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import write_section  # noqa: E402

from mgtutor.ssm.benchmark import contenders, format_table, machine, measure  # noqa: E402

SECTION = "## Scan speed"


def command_line(argv: list[str]) -> str:
    """The command that measured the table, without the options that only say where it is written."""
    shown, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--readme", "--note"):
            skip = True
        elif not arg.startswith(("--readme=", "--note=")):
            shown.append(arg)
    return " ".join(["python benchmarks/scan_speed.py", *shown])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and one repeat, for a smoke test")
    parser.add_argument("--lengths", type=int, nargs="+", help="sequence lengths (default 48 128 512 2048)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement; the best counts")
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 1 (default) times CPU time, more time the wall clock")
    parser.add_argument("--naive-budget", type=float, default=15.0, help="seconds the naive loop may take per length")
    parser.add_argument("--no-mambapy", action="store_true", help="leave out mambapy's pscan")
    parser.add_argument("--readme", type=Path, help="write the table into this file's 'Scan speed' section")
    parser.add_argument("--note", default="", help="a sentence to put under the table in the README")
    args = parser.parse_args(argv)

    if args.threads < 1:
        parser.error("--threads must be at least 1")
    torch.set_num_threads(args.threads)
    clock = "cpu" if args.threads == 1 else "wall"
    b, d, n = (1, 64, 8) if args.quick else (1, 1024, 16)
    lengths = args.lengths or ([7, 48] if args.quick else [48, 128, 512, 2048])
    repeats = 1 if args.quick else args.repeats
    with_mambapy = not args.no_mambapy
    if with_mambapy and importlib.util.find_spec("mambapy") is None:
        print("mambapy is not installed (pip install mambapy); leaving it out", file=sys.stderr)
        with_mambapy = False

    before = machine()
    print(f"machine: {before}")
    setting = f"float32, b={b}, d={d}, n={n}, best of {repeats}, {clock} clock"
    print(setting, flush=True)
    rows = measure(
        contenders(with_mambapy), lengths, b=b, d=d, n=n, repeats=repeats, clock=clock,
        naive_budget_s=args.naive_budget, log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    table = format_table(rows, b, d, n)
    after = machine()
    print(table)
    print(f"machine after the run: {after}")
    if args.readme:
        text = "\n\n".join(
            part for part in (
                f"`{command_line(sys.argv[1:] if argv is None else argv)}`: "
                f"{setting} ({'CPU time of the process, one torch thread' if clock == 'cpu' else 'wall-clock time'}); "
                "\"-\" marks a run left out (the naive loop beyond its time budget).",
                f"Machine: {before}. Load average after the run: {after.rsplit('load average ', 1)[-1]}.",
                table,
                args.note,
            ) if part
        )
        write_section(args.readme, SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
