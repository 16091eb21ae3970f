"""Each lab notebook, run top to bottom in JupyterLab in a real (headless) Chromium.

What a learner would see: every cell ran, no traceback, every widget rendered, and the cgroup monitor's live
memory gauge follows the kernel's own number (read from cgroupfs by this test while the notebook runs).
A full-page screenshot of each notebook goes to test-artifacts/screenshots/.

MINICONTAINER_NOTEBOOKS=DIR runs the notebooks of another folder instead of notebooks/.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tempfile
import time

import pytest
from browser_support import CHROMIUM, CHROMIUM_ARGS, Lab, copy_without_outputs, notebooks_dir, notebooks_glob
from conftest import REPO
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

SCREENSHOTS = os.path.join(REPO, "test-artifacts", "screenshots")
RUN_SECONDS = 240
MEMORY_GAUGE_NOTEBOOKS = {"03-cgroups"}  # these must show the live memory gauge
GAUGE_RISE = 16 * 2**20
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|Cell In\[\d+\], line \d+|^\w+(Error|Exception): "
                       r"|Javascript Error", re.M)
LOADING, BROKEN = "Loading widget...", "Error displaying widget"

# One round trip per poll: what the page shows right now.
PROBE = """() => {
  const cells = [...document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-Cell')];
  return {
    prompts: cells.map(c => c.classList.contains('jp-CodeCell')
                            ? (c.querySelector('.jp-InputArea-prompt')?.innerText || '').trim() : null),
    stderr: cells.map(c => [...c.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]')]
                            .map(o => o.innerText).join('\\n')),
    outputs: cells.map(c => [...c.querySelectorAll('.jp-OutputArea-output')].map(o => o.innerText).join('\\n')),
    gauges: [...document.querySelectorAll('.mc-gauge-memory')].map(g => [g.dataset.bytes, g.dataset.file]),
    dialogs: [...document.querySelectorAll('.jp-Dialog')].map(d => d.innerText),
    widgets: document.querySelectorAll('.jp-OutputArea-output .jupyter-widgets').length,
  };
}"""


def _params():
    paths = sorted(glob.glob(notebooks_glob()))
    found = [pytest.param(path, id=os.path.basename(path).removesuffix(".ipynb")) for path in paths]
    # An empty parameter set would only skip: say loudly that there is nothing to run.
    return found or [pytest.param(None, id="no-notebooks")]


# Module-scoped, not session: while sync_playwright is open it leaves an asyncio loop marked running in
# the main thread, and pyroute2 (test_network.py, later in the run) then refuses to start its own.
@pytest.fixture(scope="module")
def lab():
    home = tempfile.mkdtemp(prefix="mc-browser-")
    try:
        copy_without_outputs(notebooks_dir(), os.path.join(home, "notebooks"))
        server = Lab(os.path.join(home, "notebooks"), os.path.join(home, "jupyter"))
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (never `playwright install`)", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


class GaugeWatch:
    """The memory gauges seen so far, each against the cgroupfs file it names (data-file)."""

    def __init__(self):
        self.first: dict[str, int] = {}
        self.top: dict[str, int] = {}
        self.agreed: dict[str, tuple[int, int]] = {}
        self.last: dict[str, tuple[int, int | None]] = {}

    def see(self, gauges: list[list[str]]) -> None:
        for raw, path in gauges:
            shown = int(raw)
            self.first.setdefault(path, shown)
            self.top[path] = max(self.top.get(path, shown), shown)
            try:
                with open(path) as f:
                    actual = int(f.read())
            except FileNotFoundError:  # the container ended and its cgroup went
                self.last[path] = (shown, None)
                continue
            self.last[path] = (shown, actual)
            # Agreement counts once risen: an idle cgroup's near-constant number would prove little.
            if shown - self.first[path] >= GAUGE_RISE and abs(shown - actual) <= 0.1 * max(shown, actual):
                self.agreed.setdefault(path, (shown, actual))

    def summary(self) -> str:
        return "; ".join(f"{p}: first {self.first[p]}, top {self.top[p]}, agreed at {self.agreed.get(p)}, "
                         f"last (gauge, file) {self.last.get(p)}" for p in self.first)


def ran(prompt: str) -> bool:
    return re.match(r"\[\d+\]", prompt) is not None


def run_all_cells(page) -> None:
    """Run > Run All Cells from the menu bar; if the run does not start, the same command from the palette."""
    def menu():
        page.click(".lm-MenuBar-item:has-text('Run')", timeout=10_000)
        page.click('.lm-Menu-item[data-command="runmenu:run-all"]', timeout=10_000)

    def palette():
        page.keyboard.press("Control+Shift+C")
        page.fill(".lm-CommandPalette-input", "Run All Cells")
        page.click('.lm-CommandPalette-item[data-command="notebook:run-all-cells"]')

    started = """() => [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputArea-prompt')]
                         .some(p => /\\[(\\*|\\d+)\\]/.test(p.innerText))"""
    for way in (menu, palette):
        try:
            way()
            page.wait_for_function(started, timeout=15_000)
            return
        except PlaywrightError:
            page.keyboard.press("Escape")
    raise AssertionError("Run All Cells did not start from the Run menu nor from the command palette")


def save_screenshot(page, name: str) -> None:
    """The whole notebook: scroll it to the top and make the window tall enough for its last cell."""
    to_top = """() => { const s = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer');
                         if (!s) return 0;
                         s.scrollTop = 0;
                         const cells = s.querySelectorAll('.jp-Cell');
                         if (!cells.length) return 0;
                         return cells[cells.length - 1].getBoundingClientRect().bottom
                                - s.getBoundingClientRect().bottom + 40 }"""
    missing = page.evaluate(to_top)
    if missing > 0:
        size = page.viewport_size
        page.set_viewport_size({"width": size["width"], "height": min(size["height"] + int(missing), 16_000)})
        page.wait_for_timeout(500)
        page.evaluate(to_top)
    os.makedirs(SCREENSHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"), full_page=True)


@pytest.mark.browser
@pytest.mark.timeout(400)
@pytest.mark.parametrize("path", _params())
def test_notebook_runs_in_jupyterlab(path, request):
    if path is None:
        pytest.fail(f"no notebooks match {notebooks_glob()}", pytrace=False)
    # Fixtures asked for here, not as arguments, so the no-notebooks case starts neither server nor browser.
    lab, browser = request.getfixturevalue("lab"), request.getfixturevalue("browser")
    name = os.path.basename(path).removesuffix(".ipynb")
    with open(path) as f:
        cells = json.load(f)["cells"]
    code = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    may_raise = {i for i, c in enumerate(cells) if "raises-exception" in c.get("metadata", {}).get("tags", [])}
    shows_widgets = any("widgets" in "".join(cells[i]["source"]) for i in code)

    lab.delete_sessions()
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        # A workspace of its own: the notebook opens alone, whatever earlier tests left open.
        page.goto(lab.url(f"lab/workspaces/{name}/tree/{name}.ipynb"))
        page.wait_for_function("n => document.querySelectorAll('.jp-NotebookPanel .jp-Notebook .jp-Cell').length == n",
                               arg=len(cells))
        deadline = time.monotonic() + 60
        while lab.kernel_status(f"{name}.ipynb") != "idle":
            assert time.monotonic() < deadline, f"the kernel did not start:\n{lab.log_tail()}"
            page.wait_for_timeout(200)
        run_all_cells(page)

        gauges = GaugeWatch()
        deadline = time.monotonic() + RUN_SECONDS
        while time.monotonic() < deadline:
            seen = page.evaluate(PROBE)
            gauges.see(seen["gauges"])
            prompts = seen["prompts"]
            # Finished: nothing queued, and every cell ran or one failed (the kernel drops the rest).
            failed = any(TRACEBACK.search(text) for text in seen["stderr"])
            finished = "[*]:" not in prompts and (failed or all(ran(prompts[i]) for i in code))
            if seen["dialogs"] or finished and lab.kernel_status(f"{name}.ipynb") == "idle":
                break
            page.wait_for_timeout(100)
        else:
            save_screenshot(page, name)
            pytest.fail(f"{name} still running after {RUN_SECONDS} s; prompts: {prompts}")

        try:  # a view shows "Loading widget..." until its model arrives, forever if it never does
            page.wait_for_function(f"""() => [...document.querySelectorAll('.jp-OutputArea-output')]
                                         .every(o => !o.innerText.includes('{LOADING}'))""", timeout=30_000)
        except PlaywrightError:
            pass  # reported below, after the screenshot
        seen = page.evaluate(PROBE)
        save_screenshot(page, name)
    finally:
        context.close()
        # Its kernel goes with the test, and with the kernel the kernel's shared helper (the leak guard).
        lab.delete_sessions()

    assert not seen["dialogs"], f"{name}: JupyterLab showed a dialog: {seen['dialogs']}"
    errors = {i: seen["stderr"][i][:2000] for i in range(len(cells))
              if i not in may_raise and TRACEBACK.search(seen["stderr"][i])}
    assert not errors, f"{name}: tracebacks in cells {list(errors)}:\n" + "\n---\n".join(errors.values())
    not_run = [i for i in code if not ran(seen["prompts"][i])]
    assert not not_run, f"{name}: cells {not_run} did not run (prompts {[seen['prompts'][i] for i in not_run]})"
    broken = [i for i, text in enumerate(seen["outputs"]) if BROKEN in text or LOADING in text]
    shown = [seen["outputs"][i][:200] for i in broken]
    assert not broken, f"{name}: widgets failed to display in cells {broken}: {shown}"
    if shows_widgets:
        assert seen["widgets"], f"{name} uses widgets but none rendered"
    if gauges.first or name in MEMORY_GAUGE_NOTEBOOKS:
        assert gauges.first, f"{name}: no .mc-gauge-memory (the cgroup monitor's memory gauge) appeared"
        assert gauges.agreed, (f"{name}: a memory gauge must rise by {GAUGE_RISE} bytes and, risen, agree with its "
                               f"cgroupfs file within 10 %: {gauges.summary()}")
