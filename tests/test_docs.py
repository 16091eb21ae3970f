"""The docs keep up with the code: every error message has a troubleshooting entry, every doctor check too."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from conftest import REPO

from minicontainer import doctor


def load_builder():
    spec = importlib.util.spec_from_file_location("build_troubleshooting",
                                                  os.path.join(REPO, "docs", "build_troubleshooting.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_error_message_is_in_troubleshooting():
    builder = load_builder()
    page = builder.PAGE.read_text()
    missing = [m for m, *_ in builder.errors() if f"`{m.replace('|', chr(92) + '|')}`" not in page]
    assert not missing, f"run `python docs/build_troubleshooting.py`: missing {missing}"
    assert builder.updated(page) == page, "docs/troubleshooting.md is out of date: run docs/build_troubleshooting.py"
    assert len(builder.errors()) > 50  # the scan really finds the runtime's messages


def test_the_architecture_doc_has_the_step_list():
    builder = load_builder()
    page = builder.ARCHITECTURE.read_text()
    assert builder.updated_architecture(page) == page, "docs/architecture.md is out of date: run " \
                                                        "docs/build_troubleshooting.py"
    from minicontainer.process import steps
    for step in steps.STEPS:
        assert f"| {step.name} | {step.process} |" in page


def test_every_doctor_check_is_explained():
    page = open(os.path.join(REPO, "docs", "troubleshooting.md")).read()
    names = {c.name for c in doctor.run_checks()}
    names = {n for n in names if not n.endswith(" namespace") and not n.startswith("cgroup ")} | {"cgroup mode"}
    missing = [n for n in names if f"`{n}`" not in page]
    assert not missing, missing
    for kind in ("mnt", "time"):
        assert f"`{kind} namespace`" in page


def readme_block(language: str) -> str:
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    return text.split(f"```{language}\n", 1)[1].split("```", 1)[0]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_the_readmes_shell_examples_run_as_written(image):
    lines = [line for line in readme_block("sh").splitlines() if "# interactive" not in line]
    script = "\n".join(["set -e"] + lines).replace("sudo ", "").replace(
        ".venv/bin/minicontainer", f"{sys.executable} -m minicontainer.cli")
    script = script.replace("wait ", "wait || [ $? = 137 ] ")  # the stopped container's status, as the comment says
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=150, cwd=REPO,
                         env=dict(os.environ, PYTHONPATH=REPO))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "box" in out.stdout and "web" in out.stdout and "sleep" in out.stdout
    assert not os.path.exists("/tmp/my-image")


@pytest.mark.timeout(120)
def test_the_readmes_python_example_runs_as_written(image):
    out = subprocess.run([sys.executable, "-c", readme_block("python")], capture_output=True, text=True,
                         timeout=100, cwd="/", env=dict(os.environ, PYTHONPATH=REPO))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("0 lab")


@pytest.mark.timeout(120)
def test_the_readmes_oci_verbs_run_as_written(image):
    """The second shell block: create, state, start, list, kill, delete by hand. Run under a subreaper, as an
    engine's monitor would be, so that the PID 1 that create leaves behind is reaped here."""
    text = open(os.path.join(REPO, "README.md")).read()
    block = text.split("```sh\n")[2].split("```", 1)[0]
    script = "\n".join(["set -e", block]).replace("sudo ", "").replace(
        ".venv/bin/minicontainer", f"{sys.executable} -m minicontainer.cli")
    reaper = ("import ctypes, os, subprocess, sys\nctypes.CDLL(None).prctl(36, 1)\n"
              "code = subprocess.run(['bash', '-c', sys.argv[1]], cwd=sys.argv[2]).returncode\n"
              "while True:\n    try:\n        os.wait()\n    except ChildProcessError:\n        break\n"
              "sys.exit(code)\n")
    out = subprocess.run([sys.executable, "-c", reaper, script, REPO], capture_output=True, text=True, timeout=100,
                         env=dict(os.environ, PYTHONPATH=REPO))
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert '"status": "created"' in out.stdout and "demo" in out.stdout and "running" in out.stdout
    assert not os.path.exists("/tmp/bundle")
