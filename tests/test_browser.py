"""The notebooks as a workshop student uses them: JupyterLab in a real browser (Debian's Chromium).

The server runs on a copy of ``notebooks/`` and of the students' copies (written by
``mgtutor.workshop.student``, as ``make student`` does) in ``test-artifacts/browser/workshop/``, so
JupyterLab's saves never touch the committed files. Each test opens a notebook, clears and runs every
cell through JupyterLab's menus, checks that no cell shows an error, then moves a widget and checks that
its plot is redrawn. In the students' copy of notebook 01, every exercise's check must first say "not
done yet"; then one exercise is filled in as a student types it, its two cells are run again, and its
check must turn green. On failure a full-page screenshot, the browser console and the server log are kept
under ``test-artifacts/browser/``; the failure message names the folder.

Run with ``make browser-test`` (or ``pytest -m browser tests/test_browser.py``); needs /usr/bin/chromium.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    JupyterLab,
    check_widget_redraws_plot,
    check_outputs,
    fill_in_and_rerun,
    open_notebook,
    run_all_cells,
)
from mgtutor.workshop.student import BEGIN, write_student_copies

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
ARTIFACTS = REPO / "test-artifacts" / "browser"

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is absent (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[JupyterLab]:
    """One JupyterLab server for the module, on throwaway copies inside the checkout: notebooks/ and the
    students' copies in student/ (JupyterLab autosaves what it runs)."""
    root = ARTIFACTS / "workshop"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(NOTEBOOKS, root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    write_student_copies(NOTEBOOKS, root / "student")
    with JupyterLab(root, tmp_path_factory.mktemp("lab-state"), ARTIFACTS / "jupyterlab.log") as server:
        yield server


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@contextlib.contextmanager
def student(browser: Browser, lab: JupyterLab, name: str) -> Iterator[Page]:
    """A fresh browser tab; on failure its screenshot and console go to test-artifacts/browser/<name>/."""
    folder = ARTIFACTS / name
    shutil.rmtree(folder, ignore_errors=True)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    try:
        yield page
    except Exception as error:
        folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(Exception):
            page.screenshot(path=folder / "page.png", full_page=True)
        (folder / "console.log").write_text("\n".join(console) + "\n")
        raise AssertionError(
            f"{error}\nscreenshot and browser console: {folder}; server log: {ARTIFACTS / 'jupyterlab.log'}"
        ) from error
    finally:
        context.close()
        with contextlib.suppress(OSError):  # a server that died has no kernels left; keep the test's own error
            lab.shutdown_kernels()


def notebook(name: str) -> str:
    """``name`` if notebooks/ holds it; otherwise the test fails (never skips) saying so."""
    if not (NOTEBOOKS / name).is_file():
        pytest.fail(f"notebooks/{name} does not exist; the workshop needs it")
    return name


def solution_cell(name: str, function: str) -> str:
    """The instructor's source of the cell that defines ``function`` (the one a student fills in)."""
    cells = json.loads((NOTEBOOKS / name).read_text())["cells"]
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    return next(src for src in sources if src.startswith(f"def {function}(") and BEGIN in src)


def test_students_notebook_01_runs_with_exercises_not_done_then_one_filled_in_turns_green(lab, browser):
    name = notebook("01_ssm_discretisation.ipynb")
    with student(browser, lab, "01") as page:
        open_notebook(page, lab, f"student/{name}")
        run_all_cells(page, timeout=300)
        check_outputs(page, {"not-done": 3})
        check_widget_redraws_plot(page, "Delta", steps=6)
        fill_in_and_rerun(page, "def zoh_diagonal(", solution_cell(name, "zoh_diagonal"), 'check("zoh_diagonal"')
        check_outputs(page, {"passed": 1, "not-done": 2})


def test_notebook_09_runs_and_another_query_redraws_its_trajectory(lab, browser):
    name = notebook("09_trajectories_and_evaluation.ipynb")
    with student(browser, lab, "09") as page:
        open_notebook(page, lab, f"notebooks/{name}")
        run_all_cells(page, timeout=600)
        check_widget_redraws_plot(page, "query")
