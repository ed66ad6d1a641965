"""Grading a student's function against the library's, on several inputs, with a message that teaches.

An :class:`Exercise` names the library's version of a piece (``reference``, with the exercise's
signature), the inputs to try (``cases``: shapes, dtypes, an edge case, each with a label the student
reads) and the mistakes worth recognising (:class:`Mistake`: a known wrong version and what to say about
it). :func:`grade` runs the student's function on every case and returns a :class:`Verdict`:

    passed     every output equals the library's on every case (within the dtype's tolerance)
    not done   the function raises NotImplementedError: the students' copy's stub
    wrong      something differs: a known mistake's message when the function computes exactly what that
               mistake computes on every case, else what differs first (compare.py), on which input, and
               on which inputs it already agrees ("matches for Delta = 0.01 but not for Delta = 1")

:func:`check` is what a notebook calls after an exercise: it shows the verdict (a coloured box in
JupyterLab, a line of text elsewhere) and returns the function the rest of the notebook should use:
the student's when it passed, the library's otherwise, so that a skipped exercise never stops the notebook.

Grading runs inside ``torch.random.fork_rng`` with a fixed seed: it neither reads nor moves the
notebook's random state, and every run tries the same inputs.
"""

from __future__ import annotations

import copy
import html
import importlib
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mgtutor.workshop.compare import Difference, difference, same

STATUSES = ("passed", "not done", "wrong")
# the modules that define exercises; each registers its own when imported
EXERCISE_MODULES = (
    "mgtutor.workshop.exercises.discretisation",
    "mgtutor.workshop.exercises.selective_scan",
    "mgtutor.workshop.exercises.mamba_block",
    "mgtutor.workshop.exercises.mamba_mhsa",
    "mgtutor.workshop.exercises.windows",
    "mgtutor.workshop.exercises.i3d",
    "mgtutor.workshop.exercises.query_points",
    "mgtutor.workshop.exercises.set_prediction",
    "mgtutor.workshop.exercises.challenge_f1",
)


@dataclass(frozen=True)
class Case:
    """One input to try: ``label`` is what the student reads ("float32, Delta = 1e-4"), ``inputs`` the
    keyword arguments of the exercise's function."""

    label: str
    inputs: dict


@dataclass(frozen=True)
class Mistake:
    """A known wrong version of the exercise (same signature) and what to tell a student whose function
    computes the same thing on every case."""

    wrong: Callable
    message: str


@dataclass(frozen=True)
class Exercise:
    """One exercise: the library's version, the inputs to grade on and the mistakes to recognise.

    Args:
        name: the exercise's name, as the notebook's check cell passes it (``check("zoh", zoh)``).
        notebook: the notebook's number ("01").
        reference: the library's version with the exercise's signature; the notebook falls back to it.
        reference_name: how the messages name it ("mgtutor.ssm.discretise.discretise(a, b, delta, 'zoh')").
        outputs: the names of the returned values, in order (one name for a single tensor).
        cases: builds the inputs, called with torch's random state forked and seeded.
        mistakes: known wrong versions with their messages, tried in order.
        rtol, atol: tolerances when the dtype's defaults are too tight (e.g. float32 sums in another order).
        minutes: how long the exercise takes a student who read the section (the workshop's schedule,
            :mod:`mgtutor.workshop.schedule`, adds it to the section's time).
    """

    name: str
    notebook: str
    reference: Callable
    reference_name: str
    outputs: tuple[str, ...]
    cases: Callable[[], list[Case]]
    mistakes: tuple[Mistake, ...] = ()
    rtol: float | None = None
    atol: float | None = None
    minutes: int = 5


REGISTRY: dict[str, Exercise] = {}


def register(exercise: Exercise) -> Exercise:
    """Add an exercise to the registry (each exercises module calls this for its own)."""
    if exercise.name in REGISTRY and REGISTRY[exercise.name] is not exercise:
        raise ValueError(f"two exercises are named {exercise.name!r}")
    REGISTRY[exercise.name] = exercise
    return exercise


def exercises() -> dict[str, Exercise]:
    """Every registered exercise by name (importing the modules that define them)."""
    for module in EXERCISE_MODULES:
        importlib.import_module(module)
    return dict(REGISTRY)


def exercise(name: str) -> Exercise:
    known = exercises()
    if name not in known:
        raise KeyError(f"no exercise is named {name!r}; known: {', '.join(sorted(known))}")
    return known[name]


@dataclass
class Verdict:
    """The result of grading: ``status`` in STATUSES and the sentence a student reads."""

    exercise: str
    status: str
    message: str
    details: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    MARKS = {"passed": "✓", "not done": "…", "wrong": "✗"}
    COLOURS = {"passed": ("#1e7b34", "#e6f4ea"), "not done": ("#9a6700", "#fff8e1"), "wrong": ("#b3261e", "#fdecea")}

    PREFIXES = {"passed": " is right", "not done": "", "wrong": " is not right yet"}

    def __str__(self) -> str:
        lines = [f"{self.MARKS[self.status]} {self.exercise}{self.PREFIXES[self.status]}: {self.message}"]
        lines += [f"    {line}" for line in self.details]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        border, background = self.COLOURS[self.status]
        status = self.status.replace(" ", "-")
        text = html.escape(str(self)).replace("\n", "<br>")
        return (
            f'<div class="mgtutor-check mgtutor-check-{status}" data-status="{status}" '
            f'style="border-left: 6px solid {border}; background: {background}; padding: 6px 10px; '
            f'font-family: monospace; white-space: pre-wrap">{text}</div>'
        )


def _describe(inputs: dict) -> str:
    parts = []
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor):
            parts.append(f"{key} {tuple(value.shape)} {str(value.dtype).removeprefix('torch.')}")
        elif isinstance(value, np.ndarray):
            parts.append(f"{key} {value.shape} {value.dtype}")
        elif isinstance(value, (int, float, str, tuple)) or value is None:
            parts.append(f"{key} = {value!r}")
        elif isinstance(value, (list, dict)):
            parts.append(f"{key}: a {type(value).__name__} of {len(value)}")
        else:
            parts.append(f"{key}: {type(value).__name__}")
    return ", ".join(parts)


_LIBRARIES = (Path(torch.__file__).parent, Path(__file__).resolve().parents[1])


def _your_line(error: BaseException) -> str | None:
    """The last line of the student's own code that the error passed through, when the source is known."""
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        path = Path(frame.filename)
        if frame.line and not any(root in path.parents for root in _LIBRARIES) and "site-packages" not in frame.filename:
            return frame.line.strip()
    return None


def _fresh(inputs: dict) -> dict:
    """A copy of the inputs for one call, so that a function that writes into them spoils nothing."""
    return {k: v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v) for k, v in inputs.items()}


def grade(name: str, function: Callable) -> Verdict:
    """Run ``function`` on every case of exercise ``name`` and compare it with the library's version.

    Everything runs with torch's random state forked and seeded: the same inputs every time, and the
    caller's random numbers are untouched."""
    ex = exercise(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return _grade(ex, function)


def _grade(ex: Exercise, function: Callable) -> Verdict:
    name = ex.name
    cases = ex.cases()
    expected, results = [], []
    for case in cases:
        expected.append(ex.reference(**_fresh(case.inputs)))
        try:
            results.append(function(**_fresh(case.inputs)))
        except NotImplementedError:
            return Verdict(name, "not done", f"not done yet. The notebook goes on with mgtutor's version, {ex.reference_name}.")
        except Exception as error:  # the student's code: any error is a message for them
            line = _your_line(error)
            return Verdict(
                name, "wrong",
                f"your function raised {type(error).__name__}: {error}",
                ([f"in the line: {line}"] if line else [])
                + [f"on the input {case.label} ({_describe(case.inputs)})",
                   f"until it passes, the notebook goes on with mgtutor's version, {ex.reference_name}"],
            )
    found: list[tuple[Case, Difference | None]] = [
        (case, difference(result, want, ex.outputs, ex.rtol, ex.atol)) for case, result, want in zip(cases, results, expected)
    ]
    failing = [(case, diff) for case, diff in found if diff is not None]
    if not failing:
        labels = "; ".join(case.label for case in cases)
        return Verdict(name, "passed", f"it matches {ex.reference_name} on all {len(cases)} inputs.", [f"inputs tried: {labels}"])
    for mistake in ex.mistakes:
        try:
            wrong = [mistake.wrong(**_fresh(case.inputs)) for case in cases]
        except Exception:  # a mistake that cannot even run on some input is not the student's
            continue
        if all(same(result, w, ex.outputs, ex.rtol, ex.atol) for result, w in zip(results, wrong)):
            return Verdict(name, "wrong", mistake.message, _where_it_differs(found, ex))
    case, diff = failing[0]
    return Verdict(name, "wrong", diff.text, _where_it_differs(found, ex, first=f"{case.label} ({_describe(case.inputs)})"))


def _where_it_differs(found: Sequence[tuple[Case, Difference | None]], ex: Exercise, first: str | None = None) -> list[str]:
    matching = [case.label for case, diff in found if diff is None]
    differing = [case.label for case, diff in found if diff is not None]
    lines = [f"first seen on the input {first}"] if first else []
    if matching:
        lines.append(f"matches mgtutor on: {'; '.join(matching)}")
        lines.append(f"differs on: {'; '.join(differing)}")
    else:
        lines.append(f"differs on every input ({'; '.join(differing)})")
    lines.append(f"until it passes, the notebook goes on with mgtutor's version, {ex.reference_name}")
    return lines


def show(verdict: Verdict) -> None:
    """Display the verdict: a coloured box in Jupyter, its text elsewhere."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(verdict)
    else:
        print(verdict)


def check(name: str, function: Callable) -> Callable:
    """Grade ``function`` as exercise ``name``, show the verdict, and return the function to go on with:
    the student's when it passed, the library's (the exercise's reference) otherwise."""
    verdict = grade(name, function)
    show(verdict)
    return function if verdict.passed else exercise(name).reference
