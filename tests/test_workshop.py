"""The workshop's exercises, tested both ways (mgtutor.workshop).

Every exercise is found in the instructor's notebooks by its ``### BEGIN SOLUTION`` marker; the cell after
it is its check, ``name = check("name", name)``. Each runs here the way a student meets it, in a namespace
holding only the notebook's first code cell (its imports):

- the students' copy's stub: the check says "not done yet" and hands back the library's version;
- the instructor's solution: the check passes and keeps the student's function;
- every wrong answer of ``WRONG_ANSWERS`` (the code a student might put between the markers): the check
  says what is wrong with it, naming the mistake, and hands back the library's version.

Each of an exercise's known mistakes (``Exercise.mistakes``) must be reached by one of its wrong answers
here, so that a new exercise cannot pass without its messages being tried on real code.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import nbformat
import pytest
import torch

from mgtutor.cli import main as cli_main
from mgtutor.workshop.check import exercise, exercises, grade
from mgtutor.workshop.student import BEGIN, END, SolutionMarkerError, stub_solutions, write_student_copies

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
# the notebooks that hold exercises so far; each must hold at least two
WITH_EXERCISES = ("01", "02", "03", "04", "07")

# exercise -> [(code between the markers, a piece of the message it must get)]
WRONG_ANSWERS: dict[str, list[tuple[str, str]]] = {
    "zoh_diagonal": [
        ("return 1 + delta * a, delta * b", "Euler's rule"),
        ("dA = delta * a\nreturn 1 + dA, torch.where(a == 0, delta * b, torch.expm1(dA) / a * b)", "the first two terms of exp"),
        ("return torch.exp(delta * a), delta * b", "Mamba's shortcut"),
        ("return torch.exp(delta * a), (torch.exp(delta * a) - 1) / a * b", "two things"),
        ("return torch.exp(delta * a), torch.expm1(delta * a) / a * b", "you divide 0 by 0"),
        ("B_bar = torch.where(a == 0, delta * b, (torch.exp(delta * a) - 1) / a * b)\nreturn torch.exp(delta * a), B_bar",
         "loses digits when x is tiny"),
        ("return torch.exp(delta * a)", "you returned one tensor of shape (8,); expected a tuple (A_bar, B_bar)"),
        ("B_bar = torch.where(a == 0, delta * b, torch.expm1(delta * a) / a * b)\nreturn torch.exp(delta * a).double(), B_bar.double()",
         "your `A_bar` is float64 where mgtutor's is float32"),
    ],
    "ssm_kernel": [
        ("return (c * B_bar) @ A_bar[:, None] ** torch.arange(1, length + 1)", "starts one step late"),
        ("return ((c * B_bar) @ A_bar[:, None] ** torch.arange(length)).flip(0)", "reversed in time"),
        ("return (c * B_bar)[:, None] * A_bar[:, None] ** torch.arange(length)",
         "has shape (8, 50); expected (50,): an extra axis 0 of size 8; did you forget to sum over it?"),
    ],
    "fft_causal_conv": [
        ("return torch.fft.irfft(torch.fft.rfft(x) * torch.fft.rfft(K), n=x.shape[-1])", "wraps around"),
        ("l = x.shape[-1]\nreturn torch.fft.irfft(torch.fft.rfft(x, n=2 * l) * torch.fft.rfft(K, n=2 * l), n=2 * l)[l:]",
         "you kept the last l"),
        ("l = x.shape[-1]\nreturn torch.fft.irfft(torch.fft.rfft(x, n=2 * l) * torch.fft.rfft(K, n=2 * l), n=2 * l)",
         "your `y` has shape (128,); expected (64,)"),
    ],
    "sequential_scan": [
        ('h = h + dBu_t\nys.append(einsum(h, C_t, "b d n, b n -> b d"))', "your state never forgets"),
        ('ys.append(einsum(h, C_t, "b d n, b n -> b d"))\nh = dA_t * h + dBu_t', "your y_t reads h_{t-1}"),
        ('h = dA_t * (h + dBu_t)\nys.append(einsum(h, C_t, "b d n, b n -> b d"))', "you decay the new input too"),
        ("h = dA_t * h + dBu_t\nys.append(h)", "your function raised RuntimeError"),
    ],
    "chunked_scan_backward": [
        ("g_t = Cdy[t] + g_next\ng.append(g_t)\ng_next = g_t", "your gradient never decays"),
        ("g_t = Cdy[t] + dA[t] * g_next\ng.append(g_t)\ng_next = g_t", "you multiply g_{t+1} by A_bar_t"),
        ("g_t = Cdy[t] + g_next\ng_next = dA[t] * g_t", "your function raised RuntimeError: stack expects a non-empty TensorList"),
    ],
    "causal_conv1d": [
        ('k = weight.shape[-1]\nwindows = F.pad(u, (0, k - 1)).unfold(-1, k, 1)\n'
         'return einsum(windows, weight, "b d l k, d k -> b d l") + bias[:, None]', "uses inputs after t"),
        ('k = weight.shape[-1]\nwindows = F.pad(u, (k - 1, 0)).unfold(-1, k, 1)\n'
         'return einsum(windows, weight.flip(-1), "b d l k, d k -> b d l") + bias[:, None]', "your kernel is flipped"),
        ('k = weight.shape[-1]\nwindows = F.pad(u, (k - 1, 0)).unfold(-1, k, 1)\n'
         'return einsum(windows, weight, "b d l k, d k -> b d l")', "you left out conv1d's bias"),
        ('k = weight.shape[-1]\nreturn einsum(u.unfold(-1, k, 1), weight, "b d l k, d k -> b d l") + bias[:, None]',
         "on the input l = 2, shorter than k = 4"),
    ],
    "gated_output": [
        ("return (y + u * D[:, None]) * torch.sigmoid(z)", "you gated with sigmoid(z)"),
        ("return y * F.silu(z) + u * D[:, None]", "you add the skip D u after the gate"),
        ("return y * F.silu(z)", "you left out the skip D u"),
        ("return (y + u * D[:, None]) * z", "you multiplied by z itself"),
        ("return (y + u * D) * F.silu(z)", "raised RuntimeError: The size of tensor a (7) must match the size of tensor b (5)"),
    ],
    "mamba_stream": [
        ("residual, x = None, v\nfor layer in block.blocks:\n    residual = x if residual is None else x + residual\n"
         "    x = layer.mixer(layer.norm(residual))\nreturn x", "your stream ends on the last Mamba block's output"),
        ("x = v\nfor layer in block.blocks:\n    residual = x\n    x = layer.mixer(layer.norm(residual))\nreturn x + residual",
         "your residual forgets the earlier blocks"),
        ("residual, x = None, v\nfor layer in block.blocks:\n    residual = x if residual is None else x + residual\n"
         "    x = layer.mixer(residual)\nreturn x + residual", "you fed each Mamba block the raw residual"),
        ("return v", "your `u` differs in"),
    ],
    "centre_ordered": [
        ("index = torch.argsort(centres, dim=1, stable=True).unsqueeze(-1).expand_as(v)\nu = block.scan(v.gather(1, index))",
         "your outputs stay in scan order"),
        ("index = torch.argsort(centres, dim=1, descending=True, stable=True).unsqueeze(-1).expand_as(v)\n"
         "u = torch.empty_like(v).scatter(1, index, block.scan(v.gather(1, index)))", "from the latest centre to the earliest"),
        ("index = torch.argsort(centres[:1], dim=1, stable=True).expand_as(centres).unsqueeze(-1).expand_as(v)\n"
         "u = torch.empty_like(v).scatter(1, index, block.scan(v.gather(1, index)))", "by the first window's centres"),
        ("u = block.scan(v)", "you scanned in index order"),
        ("index = torch.argsort(centres, dim=1, stable=True)\nu = torch.empty_like(v).scatter(1, index, block.scan(v.gather(1, index)))",
         "your function raised RuntimeError"),
    ],
    "refine": [
        ("length = points.max(-1, keepdim=True).values - points.min(-1, keepdim=True).values\nreturn points + deltas * 0.5 * length",
         "your segment spans all p points"),
        ("located = points[..., :-(points.shape[-1] // 3)]\n"
         "length = located.max(-1, keepdim=True).values - located.min(-1, keepdim=True).values\nreturn points + deltas * 0.5 * length",
         "you kept p - p // 3 points"),
        ("located = points[..., :localisation_points(points.shape[-1])]\n"
         "length = located.max(-1, keepdim=True).values - located.min(-1, keepdim=True).values\nreturn points + deltas * length",
         "you moved the points by delta * length"),
        ("return points + deltas", "your step is not scaled"),
        ("located = points[..., :localisation_points(points.shape[-1])]\n"
         "return points + deltas * 0.5 * (located.max(-1).values - located.min(-1).values)",
         "your function raised RuntimeError: The size of tensor a (30) must match the size of tensor b (16)"),
    ],
    "read_subpoints": [
        ('positions = (points[..., None] + offsets).clamp(0, 1)\n'
         'return einsum(sample_features(features, positions), logits.softmax(-1), "b q p s d, b q p s -> b q p d")',
         "jumped by whole windows"),
        ('positions = (points[..., None] + offsets / (features.shape[1] - 1)).clamp(0, 1)\n'
         'return einsum(sample_features(features, positions), logits.softmax(-1), "b q p s d, b q p s -> b q p d")',
         "you divided the offsets by t - 1"),
        ('positions = points[..., None] + offsets / features.shape[1]\n'
         'return einsum(sample_features(features, positions), logits.softmax(-1), "b q p s d, b q p s -> b q p d")',
         "a sub-point beyond the window's ends read zeros"),
        ('positions = (points[..., None] + offsets / features.shape[1]).clamp(0, 1)\n'
         'return einsum(sample_features(features, positions), logits, "b q p s d, b q p s -> b q p d")',
         "by the raw logits"),
        ('positions = (points[..., None] + offsets / features.shape[1]).clamp(0, 1)\n'
         'return einsum(sample_features(features, positions), logits.softmax(2), "b q p s d, b q p s -> b q p d")',
         "your softmax runs across the points"),
        ("positions = (points[..., None] + offsets / features.shape[1]).clamp(0, 1)\n"
         "return sample_features(features, positions).mean(dim=3)", "you averaged the sub-points equally"),
        ('positions = (points + offsets / features.shape[1]).clamp(0, 1)\n'
         'return einsum(sample_features(features, positions), logits.softmax(-1), "b q p s d, b q p s -> b q p d")',
         "your function raised RuntimeError"),
    ],
    "frame_mix": [
        ('return rearrange(F.relu(mixing.frame_norm(einsum(point_features, frame, "b q k d, b q j k -> b q d j"))), "b q d p -> b q p d")',
         "you mixed with T transposed"),
        ('return rearrange(mixing.frame_norm(F.relu(einsum(point_features, frame, "b q k d, b q k j -> b q d j"))), "b q d p -> b q p d")',
         "the ReLU comes after the LayerNorm"),
        ('return rearrange(mixing.frame_norm(einsum(point_features, frame, "b q k d, b q k j -> b q d j")), "b q d p -> b q p d")',
         "you left out the ReLU"),
        ('return F.relu(mixing.frame_norm(einsum(point_features, frame, "b q k d, b q k j -> b q d j")))',
         "your `mixed` has shape (1, 3, 8, 5); expected (1, 3, 5, 8)"),
        ('return F.relu(mixing.frame_norm(einsum(point_features, frame, "b q k d, b q k j -> b q j d")))',
         "your function raised RuntimeError"),
    ],
}


@dataclass(frozen=True)
class ExerciseCell:
    notebook: str  # file name
    index: int  # the solution cell's index in the instructor's notebook
    name: str  # the exercise's name, as the check cell passes it
    solution: str  # the instructor's cell
    check: str  # the check cell

    def __str__(self) -> str:
        return f"{self.notebook[:2]}-{self.name}"


def check_call(source: str) -> tuple[str, str]:
    """(exercise name, the name the result is bound to) of a check cell ``fn = check("name", fn)``."""
    tree = ast.parse(source)
    assert len(tree.body) == 1 and isinstance(tree.body[0], ast.Assign), f"a check cell is one assignment: {source!r}"
    call = tree.body[0].value
    assert isinstance(call, ast.Call) and getattr(call.func, "id", None) == "check", source
    return call.args[0].value, tree.body[0].targets[0].id


def find_exercises() -> list[ExerciseCell]:
    found = []
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        cells = nbformat.read(path, as_version=4).cells
        for index, cell in enumerate(cells):
            if cell.cell_type == "code" and BEGIN in cell.source:
                following = next(c for c in cells[index + 1:] if c.cell_type == "code")
                name, _ = check_call(following.source)
                found.append(ExerciseCell(path.name, index, name, cell.source, following.source))
    return found


EXERCISE_CELLS = find_exercises()


@cache
def imports(notebook: str, folder: Path = NOTEBOOKS) -> dict:
    """The namespace after the notebook's first code cell (its imports)."""
    cells = nbformat.read(folder / notebook, as_version=4).cells
    first = next(c for c in cells if c.cell_type == "code")
    namespace: dict = {}
    exec(compile(first.source, f"{notebook}, first code cell", "exec"), namespace)
    return namespace


def run_exercise(cell: ExerciseCell, solution_source: str) -> tuple[str, dict]:
    """Run an exercise cell and its check in a fresh copy of the notebook's imports: (printed text, namespace)."""
    namespace = dict(imports(cell.notebook))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(solution_source, f"{cell.notebook}, cell {cell.index}", "exec"), namespace)
        exec(compile(cell.check, f"{cell.notebook}, cell after {cell.index}", "exec"), namespace)
    return out.getvalue(), namespace


def with_answer(source: str, answer: str) -> str:
    """``source`` with its (first) marked solution replaced by ``answer``, indented as the markers are."""
    lines = source.splitlines()
    begin = next(i for i, line in enumerate(lines) if line.strip() == BEGIN)
    end = next(i for i, line in enumerate(lines) if line.strip() == END)
    indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
    return "\n".join(lines[:begin] + [indent + line for line in answer.splitlines()] + lines[end + 1:])


@pytest.fixture(scope="module")
def student_copies(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("student")
    write_student_copies(NOTEBOOKS, out)
    return out


def test_students_copies_hold_stubs_no_solutions_and_no_outputs(student_copies):
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        instructor = nbformat.read(path, as_version=4)
        copy = nbformat.read(student_copies / path.name, as_version=4)
        solutions = sum(c.cell_type == "code" and BEGIN in c.source for c in instructor.cells)
        stubs = [c for c in copy.cells if c.cell_type == "code" and "# YOUR CODE HERE" in c.source]
        assert len(stubs) == solutions, path.name
        assert "Students' copy" in copy.cells[0].source
        assert len(copy.cells) == len(instructor.cells) + 1
        for cell in copy.cells:
            assert BEGIN not in cell.source and END not in cell.source
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None
        for stub in stubs:
            assert re.search(r'raise NotImplementedError\([\'"].{10,}[\'"]\)', stub.source), stub.source
        if path.name[:2] in WITH_EXERCISES:
            assert solutions >= 2, f"{path.name} holds {solutions} exercise(s); a notebook with exercises needs two or more"


def test_the_cli_writes_the_copies(tmp_path, capsys):
    assert cli_main(["student", "--notebooks", str(NOTEBOOKS), "--out", str(tmp_path / "student")]) == 0
    written = sorted(p.name for p in (tmp_path / "student").glob("*.ipynb"))
    assert written == sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    assert "01_ssm_discretisation.ipynb (3 exercises)" in capsys.readouterr().out


def test_a_stub_keeps_the_code_around_it_and_takes_the_hint():
    source = "def f(x):\n    y = 2\n    ### BEGIN SOLUTION\n    # HINT: double it\n    return y * x\n    ### END SOLUTION\n"
    assert stub_solutions(source) == "def f(x):\n    y = 2\n    # YOUR CODE HERE\n    raise NotImplementedError('double it')"


@pytest.mark.parametrize(
    "source, message",
    [
        ("### BEGIN SOLUTION\n# HINT: h\nx = 1\n### END SOLUTION", "must sit inside a function body"),
        ("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION", "no '# HINT: ...' line"),
        ("def f():\n    ### BEGIN SOLUTION\n    # HINT: h\n    return 1", "never closed"),
        ("def f():\n    return 1\n    ### END SOLUTION", "without a ### BEGIN SOLUTION"),
    ],
)
def test_bad_markers_are_refused_naming_the_cell_and_line(source, message):
    with pytest.raises(SolutionMarkerError, match=re.escape(message)) as error:
        stub_solutions(source, "07_x.ipynb, cell 4")
    assert "07_x.ipynb, cell 4, line" in str(error.value)


def test_every_exercise_is_in_a_notebook_and_every_mistake_has_a_wrong_answer():
    registered = exercises()
    in_notebooks = [cell.name for cell in EXERCISE_CELLS]
    assert sorted(in_notebooks) == sorted(registered), "each registered exercise appears exactly once in the notebooks"
    for cell in EXERCISE_CELLS:
        assert registered[cell.name].notebook == cell.notebook[:2], cell
        assert check_call(cell.check)[1] in cell.solution, f"{cell}: the check rebinds the exercise's function"
    for name, ex in registered.items():
        answers = WRONG_ANSWERS.get(name, [])
        assert answers, f"{name}: add wrong answers to WRONG_ANSWERS"
        for mistake in ex.mistakes:
            assert any(fragment in mistake.message for _, fragment in answers), f"{name}: no wrong answer reaches {mistake.message!r}"


@pytest.mark.parametrize("cell", EXERCISE_CELLS, ids=str)
def test_the_stub_says_not_done_yet_and_the_notebook_goes_on_with_the_library(cell, student_copies):
    copy = nbformat.read(student_copies / cell.notebook, as_version=4).cells[cell.index + 1]  # +1: the copy's first note
    assert "raise NotImplementedError" in copy.source
    printed, namespace = run_exercise(cell, copy.source)
    assert f"{cell.name}: not done yet" in printed
    assert namespace[check_call(cell.check)[1]] is exercise(cell.name).reference


@pytest.mark.parametrize("cell", EXERCISE_CELLS, ids=str)
def test_the_instructors_solution_passes(cell):
    printed, namespace = run_exercise(cell, cell.solution)
    assert f"✓ {cell.name} is right" in printed, printed
    assert namespace[check_call(cell.check)[1]] is not exercise(cell.name).reference


@pytest.mark.parametrize("cell", EXERCISE_CELLS, ids=str)
def test_each_wrong_answer_gets_its_message(cell):
    for answer, fragment in WRONG_ANSWERS[cell.name]:
        printed, namespace = run_exercise(cell, with_answer(cell.solution, answer))
        assert f"✗ {cell.name} is not right yet" in printed, f"{answer!r} passed:\n{printed}"
        assert fragment in printed, f"{answer!r} should get {fragment!r}, got:\n{printed}"
        assert namespace[check_call(cell.check)[1]] is exercise(cell.name).reference


def test_grading_leaves_the_notebooks_random_state_alone():
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    grade("mamba_stream", exercise("mamba_stream").reference)
    torch.testing.assert_close(torch.rand(4), expected)


def test_the_verdict_shows_its_status_in_html_for_jupyterlab():
    html = grade("gated_output", exercise("gated_output").reference)._repr_html_()
    assert 'class="mgtutor-check mgtutor-check-passed"' in html and "is right" in html


def test_the_references_are_what_the_library_computes():
    """Where an exercise's reference is a formula (not a library call), it equals the library."""
    from mgtutor.ssm import Mamba, selective_scan
    from mgtutor.ssm.benchmark import scan_inputs

    x = scan_inputs(2, 6, 4, 11, dtype=torch.float64)
    bare = selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], delta_bias=x["delta_bias"], delta_softplus=True)
    full = selective_scan(**x, delta_softplus=True)
    torch.testing.assert_close(exercise("gated_output").reference(bare, x["u"], x["z"], x["D"]), full)

    from mgtutor.model.interactive import DeformableSampling

    sampling = DeformableSampling(6, 9, subpoints=3, boundary_points=4).double()
    for heads in sampling.groups.values():
        torch.nn.init.normal_(heads["offsets"].weight, std=2.0)  # offsets of a few steps, some past the ends
        torch.nn.init.normal_(heads["weights"].weight)
    query, points = torch.randn(2, 5, 6, dtype=torch.float64), torch.rand(2, 5, 9, dtype=torch.float64)
    features = torch.randn(2, 11, 6, dtype=torch.float64)
    offsets = torch.cat([sampling.groups[g]["offsets"](query)[:, :, None].expand(-1, -1, n, -1) for g, n in (("boundary", 4), ("centre", 5))], 2)
    logits = torch.cat([sampling.groups[g]["weights"](query)[:, :, None].expand(-1, -1, n, -1) for g, n in (("boundary", 4), ("centre", 5))], 2)
    torch.testing.assert_close(exercise("read_subpoints").reference(features, points, offsets, logits), sampling(query, features, points))

    block = Mamba(8, d_conv=4).double()
    u = torch.randn(2, block.d_inner, 11, dtype=torch.float64)
    conv = exercise("causal_conv1d").reference(u, block.conv1d.weight[:, 0], block.conv1d.bias)
    torch.testing.assert_close(conv, block.conv1d(u)[..., :11])


@pytest.mark.slow
@pytest.mark.parametrize("number", WITH_EXERCISES)
def test_a_students_copy_runs_top_to_bottom_with_every_exercise_not_done(number, student_copies):
    """What a student sees on "Run All" before writing anything: no error, every check "not done yet"."""
    from nbclient import NotebookClient

    path = next(student_copies.glob(f"{number}_*.ipynb"))
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    shown = [
        output.get("data", {}).get("text/plain", "") + output.get("text", "")
        for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    ]
    stubs = sum("# YOUR CODE HERE" in cell.source for cell in notebook.cells)
    assert sum("not done yet" in text for text in shown) == stubs >= 2
    assert not any(output.output_type == "error" for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs)
