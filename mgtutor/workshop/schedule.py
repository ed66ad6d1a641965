"""A workshop's minute marks, computed from the notebooks themselves.

Each notebook is cut into sections at its ``## `` headings (the cells before the first one are its
introduction). A section's minutes are the time a student spends on it:

    reading    its markdown at :data:`WORDS_A_MINUTE` (technical prose with equations reads slower than
               a novel) and its code at :data:`CODE_LINES_A_MINUTE` (a student reads a cell before
               running it)
    running    its code cells' run time as the committed outputs record it (nbconvert writes each cell's
               start and end into the cell's metadata when it executes a notebook)
    exercises  each exercise checked in the section (a ``check("name", ...)`` cell): its
               :attr:`~mgtutor.workshop.check.Exercise.minutes`

The marks are cumulative whole minutes, written into each heading as ``(min A-B)`` by
``python -m mgtutor.workshop.schedule --write``; ``docs/workshop.md`` prints the table
``python -m mgtutor.workshop.schedule`` gives. These are estimates from the content and measured run
times, not timings of a group of students: the reading rates are the model's assumptions.
"""

from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import nbformat

WORDS_A_MINUTE = 120
CODE_LINES_A_MINUTE = 12
MARK = re.compile(r"\s*\(min \d+-\d+\)\s*$")
CHECK_CALL = re.compile(r"""\bcheck\(\s*["'](\w+)["']""")


@dataclass(frozen=True)
class Section:
    """One ``##`` section of a notebook: its heading (without a minute mark) and what it asks of a student."""

    heading: str
    words: int
    code_lines: int
    run_seconds: float
    exercises: tuple[str, ...]
    exercise_minutes: float
    start: int = 0  # cumulative whole minutes, filled by :func:`notebook_schedule`
    end: int = 0

    @property
    def minutes(self) -> float:
        return self.words / WORDS_A_MINUTE + self.code_lines / CODE_LINES_A_MINUTE + self.run_seconds / 60 + self.exercise_minutes


def _run_seconds(cell: nbformat.NotebookNode) -> float:
    timing = cell.get("metadata", {}).get("execution", {})
    try:
        start = datetime.fromisoformat(timing["iopub.execute_input"].replace("Z", "+00:00"))
        end = datetime.fromisoformat(timing["shell.execute_reply"].replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return 0.0
    return max(0.0, (end - start).total_seconds())


def _words(markdown: str) -> int:
    text = re.sub(r"\$[^$]*\$", " x ", markdown)  # an equation reads as about one word
    return len(re.findall(r"[A-Za-z0-9][\w'.-]*", text))


def _code_lines(source: str) -> int:
    return sum(1 for line in source.splitlines() if line.strip())


def _exercise_minutes(names: list[str]) -> float:
    if not names:
        return 0.0
    from mgtutor.workshop.check import exercise

    return float(sum(exercise(name).minutes for name in names))


def sections(notebook: nbformat.NotebookNode) -> list[Section]:
    """The notebook's sections in order, with what each asks of a student (no minute marks yet)."""
    found: list[dict] = []
    current = {"heading": "(introduction)", "words": 0, "code_lines": 0, "run_seconds": 0.0, "exercises": []}
    for cell in notebook.cells:
        source = cell.source
        if cell.cell_type == "markdown":
            heading = next((line for line in source.splitlines() if line.startswith("## ")), None)
            if heading is not None:
                found.append(current)
                current = {"heading": MARK.sub("", heading[3:]).strip(), "words": 0, "code_lines": 0, "run_seconds": 0.0, "exercises": []}
            current["words"] += _words(source)
        elif cell.cell_type == "code":
            current["code_lines"] += _code_lines(source)
            current["run_seconds"] += _run_seconds(cell)
            current["exercises"] += CHECK_CALL.findall(source)
    found.append(current)
    return [
        Section(s["heading"], s["words"], s["code_lines"], s["run_seconds"], tuple(s["exercises"]), _exercise_minutes(s["exercises"]))
        for s in found
        if s["heading"] != "(introduction)" or s["words"] or s["code_lines"]
    ]


def notebook_schedule(notebook: nbformat.NotebookNode) -> list[Section]:
    """:func:`sections` with cumulative whole-minute marks: each section starts where the previous one
    ended and lasts at least a minute."""
    marked, clock, end = [], 0.0, 0
    for section in sections(notebook):
        start = end
        clock += section.minutes
        end = max(start + 1, round(clock))
        marked.append(Section(**{**section.__dict__, "start": start, "end": end}))
    return marked


def write_marks(path: str | Path) -> bool:
    """Write each ``##`` heading's ``(min A-B)`` mark into the notebook at ``path``; True when it changed.
    Only the headings' text changes (outputs and metadata stay as they are)."""
    from mgtutor.files import atomic_path

    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    marks = {s.heading: (s.start, s.end) for s in notebook_schedule(notebook) if s.heading != "(introduction)"}
    changed = False
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.split("\n")
        for i, line in enumerate(lines):
            if line.startswith("## "):
                heading = MARK.sub("", line[3:]).strip()
                start, end = marks[heading]
                new = f"## {heading} (min {start}-{end})"
                if new != line:
                    lines[i], changed = new, True
        cell.source = "\n".join(lines)
    if changed:
        with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
            nbformat.write(notebook, handle)
    return changed


def table(paths: list[Path]) -> str:
    """A markdown table: a row a notebook, with its minutes, its CPU run time and its exercises, and their sums."""
    rows = ["| notebook | minutes | sections (min) | run time | exercises |", "|---|---:|---|---:|---|"]
    total_minutes, total_run, total_exercises = 0, 0.0, 0
    for path in paths:
        marked = notebook_schedule(nbformat.read(path, as_version=4))
        parts = ", ".join(f"{s.heading.split('.')[0] if s.heading[:1].isdigit() else s.heading[:18]} {s.start}-{s.end}" for s in marked)
        run = sum(s.run_seconds for s in marked)
        names = [name for s in marked for name in s.exercises]
        minutes = marked[-1].end if marked else 0
        rows.append(f"| {path.stem} | {minutes} | {parts} | {math.ceil(run)} s | {', '.join(f'`{n}`' for n in names) or '-'} |")
        total_minutes, total_run, total_exercises = total_minutes + minutes, total_run + run, total_exercises + len(names)
    rows.append(f"| all | {total_minutes} | | {math.ceil(total_run)} s | {total_exercises} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mgtutor.workshop.schedule", description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", default=None, help="notebooks (default: notebooks/NN_*.ipynb)")
    parser.add_argument("--write", action="store_true", help="write the minute marks into the headings")
    args = parser.parse_args(argv)
    paths = [Path(p) for p in args.notebooks] if args.notebooks else sorted(Path("notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.write:
        for path in paths:
            if write_marks(path):
                print(f"marked {path}")
    print(table(paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
