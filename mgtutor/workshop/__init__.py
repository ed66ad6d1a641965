"""mgtutor.workshop: exercises the library grades, and the students' copies of the notebooks.

- `check`: :func:`check` grades a student's function against the library's on several inputs, shows
  "not done yet", a message that says what differs, or a green pass, and returns the function the
  notebook goes on with (the student's when it passed, the library's otherwise).
- `compare`: what differs between two results (structure, shape, dtype, NaN, values), in words.
- `student`: `make student` (``mgtutor student``) writes ``student/NN_*.ipynb`` from ``notebooks/``: every
  marked solution replaced by a stub raising ``NotImplementedError`` with the solution's hint, outputs cleared.
- `exercises`: the exercises themselves, one module a notebook.

How to add an exercise to a notebook
------------------------------------

1. In ``mgtutor/workshop/exercises/<topic>.py`` (add the module to ``check.EXERCISE_MODULES``), register an
   :class:`~mgtutor.workshop.check.Exercise`: its name, the notebook's number, the library's version with
   the exercise's signature (the fallback), the names of its outputs, a function that builds 3-6 inputs
   (shapes, a float32 one, an edge case; labelled in the student's terms) and the mistakes worth
   recognising, each a wrong version with the message it deserves.
2. In the instructor's notebook, put a markdown cell with the task and its hints, then a code cell that
   defines the function, its solution between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` inside the
   function body, with a ``# HINT: ...`` line (the stub's message). Only the notebook's first code cell
   (its imports) may be needed to run that cell: the function takes everything else as arguments.
3. The next code cell is the check, one line: ``name = check("name", name)``. Later cells use ``name``.
4. In ``tests/test_workshop.py``, add at least one wrong answer to ``WRONG_ANSWERS``: the code that
   replaces the solution and a piece of the message it must get. The tests find the new exercise in the
   notebook by its markers and check the stub ("not done yet"), the solution (passes) and the wrong answers.
5. Re-execute the notebook (its check shows a pass) and run ``pytest tests/test_workshop.py``.
"""

from mgtutor.workshop.check import Exercise, Verdict, check, grade

__all__ = ["Exercise", "Verdict", "check", "grade"]
