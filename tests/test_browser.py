"""The notebooks as a workshop student uses them: JupyterLab in a real browser (Debian's Chromium).

Each test opens a notebook from a copy of ``notebooks/`` in ``test-artifacts/browser/notebooks/`` (so
JupyterLab's saves never touch the committed files),
clears and runs every cell through JupyterLab's menus, checks that no cell shows an error, then moves a
widget and checks that its plot is redrawn. On failure a full-page screenshot, the browser console and
the server log are kept under ``test-artifacts/browser/``; the failure message names the folder.

Run with ``make browser-test`` (or ``pytest -m browser tests/test_browser.py``); needs /usr/bin/chromium.
"""

from __future__ import annotations

import contextlib
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
    open_notebook,
    run_all_cells,
)

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
    """One JupyterLab server for the module, on a throwaway copy of notebooks/ inside the checkout
    (JupyterLab autosaves what it runs; notebooks find configs/ by walking up from their folder)."""
    root = ARTIFACTS / "notebooks"
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
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


def test_notebook_01_runs_and_the_delta_slider_redraws_the_impulse_responses(lab, browser):
    name = notebook("01_ssm_discretisation.ipynb")
    with student(browser, lab, "01") as page:
        open_notebook(page, lab, name)
        run_all_cells(page, timeout=300)
        check_widget_redraws_plot(page, "Delta", steps=6)


def test_notebook_09_runs_and_another_query_redraws_its_trajectory(lab, browser):
    name = notebook("09_trajectories_and_evaluation.ipynb")
    with student(browser, lab, "09") as page:
        open_notebook(page, lab, name)
        run_all_cells(page, timeout=600)
        check_widget_redraws_plot(page, "query")
