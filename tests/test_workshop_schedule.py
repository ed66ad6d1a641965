"""mgtutor.workshop.schedule: minute marks computed from a notebook's words, code, run times and exercises,
and the committed notebooks and docs/workshop.md agreeing with them."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from mgtutor.workshop import schedule
from mgtutor.workshop.check import exercise

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def code_cell(source: str, seconds: float | None = None) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source)
    if seconds is not None:
        cell.metadata["execution"] = {
            "iopub.execute_input": "2026-01-01T10:00:00.000000Z",
            "shell.execute_reply": f"2026-01-01T10:{int(seconds // 60):02d}:{seconds % 60:09.6f}Z",
        }
    return cell


def test_a_section_is_its_reading_running_and_exercises():
    words = " ".join(["word"] * schedule.WORDS_A_MINUTE)  # one minute of reading
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Title\n" + words),
        nbformat.v4.new_markdown_cell("## 1. First (min 0-0)\n" + words + " $\\bar A = e^{\\Delta A}$"),
        code_cell("\n".join(["x = 1"] * schedule.CODE_LINES_A_MINUTE) + "\n\n", seconds=90),
        nbformat.v4.new_markdown_cell("## 2. Second"),
        code_cell('zoh_diagonal = check("zoh_diagonal", zoh_diagonal)'),
    ])  # fmt: skip
    found = schedule.sections(notebook)
    assert [s.heading for s in found] == ["(introduction)", "1. First", "2. Second"]
    intro, first, second = found
    assert intro.words == 1 + schedule.WORDS_A_MINUTE and intro.code_lines == 0
    # the heading's words ("1.", "First", "min", "0-0") and the equation (one word) besides the prose
    assert first.words == schedule.WORDS_A_MINUTE + 5 and first.code_lines == schedule.CODE_LINES_A_MINUTE
    assert first.run_seconds == pytest.approx(90)
    assert first.minutes == pytest.approx((schedule.WORDS_A_MINUTE + 5) / schedule.WORDS_A_MINUTE + 1 + 1.5)
    assert second.exercises == ("zoh_diagonal",)
    assert second.minutes == pytest.approx(2 / schedule.WORDS_A_MINUTE + 1 / schedule.CODE_LINES_A_MINUTE + exercise("zoh_diagonal").minutes)
    marked = schedule.notebook_schedule(notebook)
    ends = [round(intro.minutes), round(intro.minutes + first.minutes), round(intro.minutes + first.minutes + second.minutes)]
    assert [s.end for s in marked] == ends and [s.start for s in marked] == [0, *ends[:2]]


def test_marks_are_written_into_the_headings_only(tmp_path):
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("## 1. One (min 7-9)\n" + " ".join(["w"] * 300)),
        code_cell("print(1)", seconds=30),
        nbformat.v4.new_markdown_cell("## 2. Two\ntext"),
    ])  # fmt: skip
    notebook.cells[1].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    path = tmp_path / "01_x.ipynb"
    nbformat.write(notebook, path)
    assert schedule.write_marks(path) is True
    written = nbformat.read(path, as_version=4)
    assert written.cells[0].source.splitlines()[0] == "## 1. One (min 0-3)"
    assert written.cells[2].source.splitlines()[0] == "## 2. Two (min 3-4)"
    assert written.cells[1].outputs == notebook.cells[1].outputs
    assert schedule.write_marks(path) is False  # already marked


def test_every_exercise_has_a_duration():
    from mgtutor.workshop.check import exercises

    assert all(1 <= ex.minutes <= 15 for ex in exercises().values())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_notebooks_headings_carry_the_computed_marks(path):
    notebook = nbformat.read(path, as_version=4)
    expected = {f"## {s.heading} (min {s.start}-{s.end})" for s in schedule.notebook_schedule(notebook) if s.heading != "(introduction)"}
    found = {line for cell in notebook.cells if cell.cell_type == "markdown" for line in cell.source.splitlines() if line.startswith("## ")}
    assert found == expected, f"run `python -m mgtutor.workshop.schedule --write` (expected {sorted(expected - found)})"


def test_the_workshop_guide_prints_the_computed_table():
    guide = (REPO / "docs" / "workshop.md").read_text()
    assert schedule.table(NOTEBOOKS) in guide, "docs/workshop.md: paste the table `python -m mgtutor.workshop.schedule` prints"


def test_the_tables_last_row_sums_the_notebooks():
    rows = [line.split("|")[1:-1] for line in schedule.table(NOTEBOOKS).splitlines()[2:]]
    *notebooks, total = rows
    assert total[0].strip() == "all"
    assert int(total[1]) == sum(int(row[1]) for row in notebooks)
    assert int(total[4]) == sum(row[4].count("`") // 2 for row in notebooks) == 22
