"""The students' copies of the notebooks: every marked solution replaced by a stub, every output cleared.

The instructor's notebook is the one source. In a code cell, a solution sits between nbgrader's markers,
indented inside a function body, with a one-line hint among its lines::

    def zoh_diagonal(a, b, delta):
        ### BEGIN SOLUTION
        # HINT: A_bar = exp(Δa); B_bar = expm1(Δa) / a * b, and Δ b where a = 0
        dA = delta * a
        ...
        ### END SOLUTION

The students' copy keeps everything outside the markers and puts in their place::

        # YOUR CODE HERE
        raise NotImplementedError("A_bar = exp(Δa); B_bar = expm1(Δa) / a * b, and Δ b where a = 0")

A solution must be indented (inside a function): a stub at a cell's top level would raise while the
cell runs and stop "Run All"; inside a function it raises only when the function is called, which the
check after the exercise catches ("not done yet"). A cell may hold several marked regions; each needs
its own ``# HINT:`` line. Outputs and execution counts are cleared, and a first cell tells the student
what the copy is. Only nbformat is needed (no nbgrader).
"""

from __future__ import annotations

from pathlib import Path

import nbformat

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
HINT = "# HINT:"
NOTEBOOKS = "[0-9][0-9]_*.ipynb"


class SolutionMarkerError(ValueError):
    """A marked solution the copy cannot be made from; the message names the notebook, cell and line."""


def stub_solutions(source: str, where: str = "cell") -> str:
    """``source`` with every marked solution replaced by its stub (module docstring); ``where`` names the
    cell in error messages ("01_ssm_discretisation.ipynb, cell 9")."""
    out: list[str] = []
    inside, hint, indent, opened = False, None, "", 0
    for number, line in enumerate(source.splitlines(), 1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise SolutionMarkerError(f"{where}, line {number}: {BEGIN} before the {END} of line {opened}'s solution")
            indent = line[: len(line) - len(line.lstrip())]
            if not indent:
                raise SolutionMarkerError(
                    f"{where}, line {number}: a solution must sit inside a function body (indented); a stub at the "
                    "top level of a cell would stop Run All"
                )
            inside, hint, opened = True, None, number
        elif stripped == END:
            if not inside:
                raise SolutionMarkerError(f"{where}, line {number}: {END} without a {BEGIN} before it")
            if not hint:
                raise SolutionMarkerError(f"{where}, line {opened}: the solution has no '{HINT} ...' line for the stub's message")
            out += [f"{indent}# YOUR CODE HERE", f"{indent}raise NotImplementedError({hint!r})"]
            inside = False
        elif inside:
            if stripped.startswith(HINT) and hint is None:
                hint = stripped[len(HINT):].strip()
        else:
            out.append(line)
    if inside:
        raise SolutionMarkerError(f"{where}, line {opened}: {BEGIN} is never closed by {END}")
    return "\n".join(out)


def has_solution(cell) -> bool:
    return cell.cell_type == "code" and any(line.strip() == BEGIN for line in cell.source.splitlines())


def exercise_count(path: str | Path) -> int:
    """How many stubs a students' copy holds (the cells that raise NotImplementedError with a hint)."""
    cells = nbformat.read(path, as_version=4).cells
    return sum(c.cell_type == "code" and "# YOUR CODE HERE" in c.source for c in cells)


def student_notebook(notebook: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """A students' copy of ``notebook`` (named ``name`` in messages and in its first cell)."""
    copy = nbformat.from_dict(notebook)
    exercises = 0
    for index, cell in enumerate(copy.cells):
        if cell.cell_type != "code":
            continue
        if has_solution(cell):
            cell.source = stub_solutions(cell.source, f"{name}, cell {index}")
            exercises += 1
        cell.outputs = []
        cell.execution_count = None
        cell.metadata.pop("execution", None)
    if exercises:
        note = (
            f"*Students' copy of `notebooks/{name}`, written by `make student`: its {exercises} exercise cell(s) "
            "raise `NotImplementedError` until you write them. The check after each says \"not done yet\", "
            "points at what differs, or turns green; until then the notebook goes on with mgtutor's version.*"
        )
    else:
        note = f"*Students' copy of `notebooks/{name}`, written by `make student`: this notebook has no exercises.*"
    first = nbformat.v4.new_markdown_cell(note)
    first["id"] = "students-copy"  # a fixed id: the same notebook gives the same copy
    copy.cells.insert(0, first)
    return copy


def write_student_copies(source_dir: str | Path, out_dir: str | Path, pattern: str = NOTEBOOKS) -> list[Path]:
    """Write a students' copy of every notebook ``source_dir/NN_*.ipynb`` to ``out_dir`` (same names).

    Every copy is checked before any is written, so a bad marker leaves ``out_dir`` as it was.
    """
    from mgtutor.files import atomic_path, check_output_folder

    source_dir, out_dir = Path(source_dir), check_output_folder(out_dir, "the students' copies")
    if not source_dir.is_dir():
        raise NotADirectoryError(f"{source_dir}: not a folder: expected the instructor's notebooks")
    if out_dir.resolve() == source_dir.resolve():
        raise ValueError(f"{out_dir} is the instructor's folder: the students' copies would replace the notebooks they are made from")
    sources = sorted(source_dir.glob(pattern))
    if not sources:
        raise FileNotFoundError(f"no notebooks matching {pattern} in {source_dir}")
    copies = {}
    for path in sources:
        try:
            notebook = nbformat.read(path, as_version=4)
        except Exception as err:  # nbformat raises JSON, validation and reader errors of several kinds
            raise SolutionMarkerError(f"{path}: not a readable notebook ({' '.join(str(err).split())[:200]})") from None
        copies[path.name] = student_notebook(notebook, path.name)
    written = []
    for name, notebook in copies.items():
        with atomic_path(out_dir / name) as tmp, open(tmp, "w", encoding="utf-8") as handle:
            nbformat.write(notebook, handle)
        written.append(out_dir / name)
    return written
