"""Selective-scan speed and memory on the CPU: mgtutor's chunked scan against a well-written loop,
the public reference's naive loop and mambapy's parallel scan, measured side by side in one run.

    python benchmarks/scan_speed.py                      # b=1, d=1024, n=16, l in 48 128 512 2048
    python benchmarks/scan_speed.py --quick              # a few seconds, small sizes (used by the tests)
    python benchmarks/scan_speed.py --readme benchmarks/README.md   # also write the "Scan speed" section

Times are the best of --repeats runs; peak memory is the tensor memory alive at once during forward +
backward beyond the inputs (see mgtutor.ssm.benchmark for how it is counted).
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from pathlib import Path

import torch

from mgtutor.ssm.benchmark import contenders, format_table, machine, measure

SECTION = "## Scan speed"


def write_section(readme: Path, text: str) -> None:
    """Replace (or append) the "Scan speed" section of ``readme``, leaving the rest of the file alone."""
    old = readme.read_text() if readme.exists() else "# Benchmarks\n"
    section = f"{SECTION}\n\n{text.strip()}\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(old):
        new = pattern.sub(lambda _: section + "\n", old, count=1).rstrip() + "\n"
    else:
        new = old.rstrip() + "\n\n" + section
    readme.write_text(new)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and one repeat, for a smoke test")
    parser.add_argument("--lengths", type=int, nargs="+", help="sequence lengths (default 48 128 512 2048)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement; the best counts")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own choice)")
    parser.add_argument("--naive-budget", type=float, default=15.0, help="seconds the naive loop may take per length")
    parser.add_argument("--no-mambapy", action="store_true", help="leave out mambapy's pscan")
    parser.add_argument("--readme", type=Path, help="write the table into this file's 'Scan speed' section")
    parser.add_argument("--note", default="", help="a sentence to put under the table in the README")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    b, d, n = (1, 64, 8) if args.quick else (1, 1024, 16)
    lengths = args.lengths or ([7, 48] if args.quick else [48, 128, 512, 2048])
    repeats = 1 if args.quick else args.repeats
    with_mambapy = not args.no_mambapy
    if with_mambapy and importlib.util.find_spec("mambapy") is None:
        print("mambapy is not installed (pip install mambapy); leaving it out", file=sys.stderr)
        with_mambapy = False

    before = machine()
    print(f"machine: {before}")
    print(f"float32, b={b}, d={d}, n={n}, best of {repeats}", flush=True)
    rows = measure(
        contenders(with_mambapy), lengths, b=b, d=d, n=n, repeats=repeats,
        naive_budget_s=args.naive_budget, log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    table = format_table(rows, b, d, n)
    after = machine()
    print(table)
    print(f"machine after the run: {after}")
    if args.readme:
        text = "\n\n".join(
            part for part in (
                f"`python benchmarks/scan_speed.py{' --threads ' + str(args.threads) if args.threads else ''}`: "
                f"float32 on the CPU, b = {b}, d = {d}, n = {n}, best of {repeats}; \"-\" marks a run left out "
                "(the naive loop beyond its time budget).",
                f"Machine: {before}. Load average after the run: {after.rsplit('load average ', 1)[-1]}.",
                table,
                args.note,
            ) if part
        )
        write_section(args.readme, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
