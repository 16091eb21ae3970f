"""The lab's notebooks: nbval from a fresh kernel, twice in one kernel, and a kernel killed mid-lesson."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import time

import nbformat
import pytest
from conftest import REPO
from nbclient import NotebookClient

NOTEBOOK_DIR = os.path.join(REPO, "notebooks")
NOTEBOOKS = sorted(glob.glob(os.path.join(NOTEBOOK_DIR, "[0-9][0-9]-*.ipynb")))
ids = [os.path.basename(p)[:-6] for p in NOTEBOOKS]


def test_the_lab_has_its_notebooks():
    assert [i[:2] for i in ids][:4] == ["00", "01", "02", "03"]


def client_for(path: str) -> tuple[NotebookClient, nbformat.NotebookNode]:
    nb = nbformat.read(path, as_version=4)
    return NotebookClient(nb, timeout=180, kernel_name="python3",
                          resources={"metadata": {"path": NOTEBOOK_DIR}}), nb


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_nbval(path):
    """nbval in lax mode: every cell must run; cells tagged nbval-check-output must print what is saved."""
    out = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-cell-timeout=180", "-p",
                          "no:cacheprovider", "-q", path], cwd=REPO, capture_output=True, text=True, timeout=800)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids)
def test_runs_twice_in_one_kernel(path):
    """A learner runs the whole notebook, then runs it all again without restarting."""
    client, nb = client_for(path)
    with client.setup_kernel():
        for _ in range(2):
            for index, cell in enumerate(nb.cells):
                client.execute_cell(cell, index)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kernel_killed_mid_lesson_leaves_nothing():
    """Kill the kernel (and its process group, as a restart may) while containers and monitors run."""
    path = os.path.join(NOTEBOOK_DIR, "03-cgroups.ipynb")
    client, nb = client_for(path)
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
            if "holder = Container.start" in cell.source:
                break
        else:
            pytest.fail("the memory lesson's cell was not found")
        kernel_pid = client.km.provisioner.pid
        assert subprocess.run(["pgrep", "-f", "minicontainer.process.helper"]).returncode == 0
        os.killpg(os.getpgid(kernel_pid), signal.SIGKILL)
        time.sleep(0.2)
    # The autouse leak guard now checks that helpers, cgroups and state are gone within 5 s.
