"""Driving JupyterLab in Debian's Chromium the way a workshop student does, for tests/test_browser.py.

:class:`JupyterLab` starts a server on a loopback port with a throwaway configuration (no news,
no update check, fresh settings and workspace) and stops its whole process group afterwards. The
functions below act on a Playwright page through what a student sees and clicks: the menu bar, the
cells' ``[n]:`` prompts, the widgets' labels and the plots' ``<img>`` elements.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import Locator, Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# JupyterLab 4's DOM: a rendered output carries its MIME type; an exception's traceback and a stderr
# stream (e.g. a warning) are both rendered as application/vnd.jupyter.stderr, the pink box a student
# sees. An exception is told apart by its text: a traceback header or an "...Error:" line.
STDERR_OUTPUT = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
EXCEPTION_TEXT = re.compile(r"Traceback \(most recent call last\)|^\s*\w*(Error|Exception|Interrupt)\b", re.MULTILINE)
# ipywidgets 8 writes this text where a widget view cannot be built (e.g. its model is missing).
WIDGET_ERROR_TEXT = "Error displaying widget"
EXECUTED_PROMPT = re.compile(r"^\[\d+\]:$")


class JupyterLab:
    """A JupyterLab server on ``root_dir``, started on enter and stopped (process group) on exit.

    It listens on 127.0.0.1 on a port it picks itself (port 0: no race with another process for a
    port chosen in advance) and announces it in its runtime file. ``state_dir`` holds its configuration,
    settings, workspaces and runtime files, all fresh, so a user's own JupyterLab set-up cannot change
    what the test sees; ``log_path`` receives its output.
    """

    def __init__(self, root_dir: Path, state_dir: Path, log_path: Path, start_timeout: float = 120.0):
        self.root_dir, self.state_dir, self.log_path = Path(root_dir), Path(state_dir), Path(log_path)
        self.start_timeout = start_timeout
        self.port: int | None = None  # known once the server has written its runtime file
        self.token = secrets.token_hex(16)
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, notebook: str) -> str:
        """The address that opens ``notebook`` (relative to the root) in JupyterLab, token included;
        ``reset`` starts from an empty workspace, not the tabs an earlier page left open."""
        return f"{self.base_url}/lab/tree/{notebook}?reset&token={self.token}"

    def shutdown_kernels(self) -> None:
        """Stop every running kernel (a finished test's kernel would hold memory and threads)."""
        headers = {"Authorization": f"token {self.token}"}
        kernels_url = f"{self.base_url}/api/kernels"
        with urllib.request.urlopen(urllib.request.Request(kernels_url, headers=headers)) as response:
            kernels = json.load(response)
        for kernel in kernels:
            request = urllib.request.Request(f"{kernels_url}/{kernel['id']}", headers=headers, method="DELETE")
            urllib.request.urlopen(request).close()

    def _environment(self) -> dict[str, str]:
        dirs = {name: self.state_dir / name for name in ("config", "settings", "workspaces", "runtime", "ipython")}
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        # The announcements plugin would ask, in a toast over the notebook, whether to fetch Jupyter news.
        (dirs["config"] / "labconfig").mkdir(exist_ok=True)
        (dirs["config"] / "labconfig" / "page_config.json").write_text(
            json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
        )
        env = dict(os.environ)
        env.pop("MGTUTOR_FULL", None)  # the notebooks' small defaults, whatever the caller's shell says
        env.pop("MPLBACKEND", None)
        env.update(
            JUPYTER_CONFIG_DIR=str(dirs["config"]),
            JUPYTERLAB_SETTINGS_DIR=str(dirs["settings"]),
            JUPYTERLAB_WORKSPACES_DIR=str(dirs["workspaces"]),
            JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
            IPYTHONDIR=str(dirs["ipython"]),
        )
        return env

    def command(self) -> list[str]:
        command = [
            sys.executable, "-m", "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            "--ServerApp.port=0",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        if os.geteuid() == 0:
            command.append("--allow-root")
        return command

    def __enter__(self) -> JupyterLab:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            self.command(), cwd=self.root_dir, env=self._environment(),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        try:
            self._wait_until_up()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        runtime_file = self.state_dir / "runtime" / f"jpserver-{self.process.pid}.json"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with code {self.process.returncode}; its log: {self.log_path}")
            with contextlib.suppress(OSError, ValueError):
                self.port = self.port or json.loads(runtime_file.read_text())["port"]
                with urllib.request.urlopen(f"{self.base_url}/api/status?token={self.token}", timeout=5) as response:
                    if response.status == 200:
                        return
            time.sleep(0.5)
        raise TimeoutError(f"JupyterLab did not answer within {self.start_timeout:.0f} s; log: {self.log_path}")

    def stop(self) -> None:
        """SIGTERM to the server's process group (server and kernels), SIGKILL if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)


def kernel_status(page: Page) -> str:
    """The status bar's kernel item, e.g. 'Python 3 (ipykernel) | Idle' (empty before it exists)."""
    item = page.locator('.jp-StatusBar-TextItem[title^="Change kernel for"]')
    return item.first.text_content() if item.count() else ""


def kernel_idle(page: Page) -> bool:
    """Whether the open notebook has a kernel and it is idle (the toolbar's circle reads idle even
    while the notebook is still loading, the status bar does not)."""
    name, _, state = kernel_status(page).partition(" | ")
    return state == "Idle" and name not in ("", "No Kernel")


def raise_on_dialog(page: Page) -> None:
    """A modal dialog (kernel selection, a failed save) blocks the student: fail saying what it asks."""
    dialog = page.locator(".jp-Dialog")
    if dialog.count():
        raise AssertionError(f"JupyterLab shows a dialog: {dialog.first.inner_text()!r}")


def open_notebook(page: Page, lab: JupyterLab, notebook: str, timeout: float = 120.0) -> None:
    """Load JupyterLab at ``notebook`` and wait until all its cells are shown and its kernel is idle."""
    expected = sum(cell["cell_type"] == "code" for cell in json.loads((lab.root_dir / notebook).read_text())["cells"])
    page.goto(lab.url(notebook), timeout=timeout * 1000)
    deadline = time.monotonic() + timeout
    while not (len(code_cell_prompts(page)) == expected and kernel_idle(page)):
        raise_on_dialog(page)
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{notebook} not ready after {timeout:.0f} s: {len(code_cell_prompts(page))} of {expected} code "
                f"cells shown, kernel {kernel_status(page)!r}"
            )
        page.wait_for_timeout(250)


def menu_command(page: Page, menu: str, item: str) -> None:
    """Open ``menu`` in the menu bar (e.g. 'Run') and click its item labelled ``item``."""
    page.locator(".lm-MenuBar-item", has_text=re.compile(f"^{re.escape(menu)}$")).click()
    label = page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$"))
    page.locator(".lm-Menu .lm-Menu-item").filter(has=label).click()


def code_cell_prompts(page: Page) -> list[str]:
    """The input prompt of every code cell, in order: '[3]:' ran, '[*]:' running or queued, '[ ]:' not run."""
    cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell .jp-InputArea-prompt")
    return [re.sub(r"\s+", "", text) for text in cells.all_text_contents()]


def error_outputs(page: Page) -> list[str]:
    """The text of every exception shown on the page (in a cell or a widget's Output) and of every
    widget view that failed to render. Warnings on stderr are not errors."""
    errors = [text for text in page.locator(STDERR_OUTPUT).all_text_contents() if EXCEPTION_TEXT.search(text)]
    broken = page.locator(".jp-OutputArea-output", has_text=WIDGET_ERROR_TEXT).all_text_contents()
    return errors + broken


def run_all_cells(page: Page, timeout: float, settle: float = 5.0) -> None:
    """Clear every output (Edit menu), run all cells (Run menu) and wait until each code cell has run.

    Clearing first makes the prompts read '[ ]:', so a finished run is one where every prompt shows an
    execution count again and the kernel is idle. Fails at once on an error output, and when the kernel
    stays idle for ``settle`` seconds with cells left unrun (JupyterLab stops a run at a failing cell).
    """
    menu_command(page, "Edit", "Clear Outputs of All Cells")
    prompts = code_cell_prompts(page)
    if not prompts or any(EXECUTED_PROMPT.match(p) for p in prompts):
        raise AssertionError(f"clearing the outputs left execution counts behind: {prompts}")
    menu_command(page, "Run", "Run All Cells")
    deadline = time.monotonic() + timeout
    idle_since = None
    while True:
        page.wait_for_timeout(1000)  # polling the page costs CPU that the kernel needs on a small machine
        if errors := error_outputs(page):
            raise AssertionError("a cell shows an error:\n" + "\n---\n".join(errors))
        prompts = code_cell_prompts(page)
        done = all(EXECUTED_PROMPT.match(p) for p in prompts)
        raise_on_dialog(page)
        idle = kernel_idle(page)
        if done and idle:
            return
        idle_since = (idle_since or time.monotonic()) if idle and "[*]:" not in prompts else None
        if idle_since is not None and time.monotonic() - idle_since > settle:
            raise AssertionError(f"the kernel went idle with cells not run: prompts {prompts}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"cells still running after {timeout:.0f} s: prompts {prompts}")


def widget_control(page: Page, description: str) -> Locator:
    """The one ipywidgets control whose description label reads exactly ``description``."""
    label = page.locator(".jupyter-widgets .widget-label", has_text=re.compile(f"^\\s*{re.escape(description)}\\s*$"))
    count = label.count()
    if count != 1:
        raise AssertionError(f"expected one widget labelled {description!r}, found {count}")
    return label.locator("xpath=..")


def widget_plot_sources(page: Page, control: Locator) -> list[str]:
    """The ``src`` (a PNG data URL) of every image in the widget Output areas of ``control``'s cell."""
    cell = page.locator(".jp-CodeCell").filter(has=control)
    return [img.get_attribute("src") or "" for img in cell.locator(".widget-output img").all()]


def wait_for_plot(page: Page, control: Locator, timeout: float, different_from: list[str] | None = None) -> list[str]:
    """Wait until the control's cell shows at least one plot image (other than ``different_from``)."""
    deadline = time.monotonic() + timeout
    while True:
        sources = widget_plot_sources(page, control)
        if sources and all(s.startswith("data:image/") for s in sources) and sources != different_from:
            return sources
        if errors := error_outputs(page):
            raise AssertionError("the widget's output shows an error:\n" + "\n---\n".join(errors))
        if time.monotonic() > deadline:
            wanted = "the plot to change" if different_from else "a plot"
            raise TimeoutError(
                f"waited {timeout:.0f} s for {wanted} in the widget's output ({len(sources)} image(s) shown)"
            )
        page.wait_for_timeout(250)


def widget_value(control: Locator) -> str:
    """The control's value as its DOM states it: a slider handle's position (aria-valuenow, the exponent
    for a log slider), a dropdown's selection, the pressed toggle button."""
    classes = control.get_attribute("class") or ""
    if "widget-slider" in classes:
        return control.locator(".noUi-handle").get_attribute("aria-valuenow") or ""
    if "widget-dropdown" in classes:
        return control.locator("select").input_value()
    if "widget-toggle-buttons" in classes:
        return control.locator("button.mod-active").inner_text()
    raise AssertionError(f"no way to read a widget with classes {classes!r}")


def pick_another_value(control: Locator, steps: int = 1) -> None:
    """Change the control as a student would: arrow keys on a slider's handle, another dropdown
    option, another toggle button."""
    classes = control.get_attribute("class") or ""
    if "widget-slider" in classes:
        handle = control.locator(".noUi-handle")
        handle.focus()
        for _ in range(steps):
            handle.press("ArrowRight")
    elif "widget-dropdown" in classes:
        select = control.locator("select")
        options = select.locator("option").all()
        current = select.input_value()
        others = [o.get_attribute("value") for o in options if o.get_attribute("value") != current]
        if not others:
            raise AssertionError("the dropdown has a single option")
        select.select_option(others[0])
    elif "widget-toggle-buttons" in classes:
        control.locator("button:not(.mod-active)").first.click()
    else:
        raise AssertionError(f"no way to change a widget with classes {classes!r}")


def check_widget_redraws_plot(page: Page, description: str, steps: int = 1, timeout: float = 60.0) -> None:
    """Change the widget labelled ``description`` and check that its cell's plot image changes and no
    error appears (an exception in the widget's callback lands in its Output area as an error box)."""
    control = widget_control(page, description)
    control.scroll_into_view_if_needed()
    before = wait_for_plot(page, control, timeout)
    shown = widget_value(control)
    pick_another_value(control, steps)
    if widget_value(control) == shown:
        raise AssertionError(f"the widget {description!r} still shows {shown!r} after trying to change it")
    wait_for_plot(page, control, timeout, different_from=before)
    if errors := error_outputs(page):
        raise AssertionError(f"after changing {description!r} the page shows an error:\n" + "\n---\n".join(errors))


def code_cell(page: Page, text: str) -> Locator:
    """The one code cell of the open notebook whose source contains ``text``."""
    cells = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-CodeCell").filter(
        has=page.locator(".jp-InputArea .cm-content", has_text=text)
    )
    count = cells.count()
    if count != 1:
        raise AssertionError(f"expected one code cell containing {text!r}, found {count}")
    return cells


def check_statuses(page: Page) -> list[str]:
    """The status of every exercise check shown (mgtutor.workshop's boxes): 'passed', 'not-done', 'wrong'."""
    return [s or "" for s in page.locator(".mgtutor-check").evaluate_all("els => els.map(e => e.dataset.status)")]


def check_outputs(page: Page, expected: dict[str, int], timeout: float = 30.0) -> None:
    """Wait until the exercise checks on the page show exactly ``expected`` ({status: count}), e.g.
    {"not-done": 3} after a first run of a students' copy."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = check_statuses(page)
        counts = {status: statuses.count(status) for status in set(statuses)}
        if counts == expected:
            return
        if errors := error_outputs(page):
            raise AssertionError("a cell shows an error:\n" + "\n---\n".join(errors))
        if time.monotonic() > deadline:
            texts = page.locator(".mgtutor-check").all_inner_texts()
            raise AssertionError(f"expected exercise checks {expected}, the page shows {counts}:\n" + "\n".join(texts))
        page.wait_for_timeout(250)


def fill_in_and_rerun(page: Page, cell_text: str, source: str, check_text: str, timeout: float = 120.0) -> None:
    """Fill in an exercise as a student does: replace the source of the cell containing ``cell_text`` by
    ``source`` (select all, paste), run it and the check cell below it (Shift+Enter twice), and wait until
    that check (the cell containing ``check_text``) turns green."""
    cell = code_cell(page, cell_text)
    cell.scroll_into_view_if_needed()
    cell.locator(".jp-InputArea .cm-content").click()
    page.keyboard.press("Control+a")
    page.keyboard.insert_text(source)  # a paste: no auto-indent or auto-closed brackets
    typed = cell.locator(".jp-InputArea .cm-content").inner_text()
    if "NotImplementedError" in typed or "BEGIN SOLUTION" not in typed:
        raise AssertionError(f"the cell was not replaced by the solution; it reads:\n{typed}")
    page.keyboard.press("Shift+Enter")  # runs the exercise cell and selects the check cell below it
    page.keyboard.press("Shift+Enter")  # runs the check
    check = code_cell(page, check_text)
    box = check.locator(".mgtutor-check")
    deadline = time.monotonic() + timeout
    while not (box.count() == 1 and box.get_attribute("data-status") == "passed"):
        if errors := error_outputs(page):
            raise AssertionError("after filling in the exercise a cell shows an error:\n" + "\n---\n".join(errors))
        if time.monotonic() > deadline:
            shown = box.all_inner_texts() if box.count() else ["(no check output)"]
            raise TimeoutError(f"the check did not turn green within {timeout:.0f} s; it shows:\n" + "\n".join(shown))
        page.wait_for_timeout(250)
    red, green, blue = (int(v) for v in re.findall(r"\d+", box.evaluate("e => getComputedStyle(e).backgroundColor"))[:3])
    if not green > max(red, blue):
        raise AssertionError(f"the passed check's background is rgb({red}, {green}, {blue}), not green")
