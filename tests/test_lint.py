"""ruff over the package, tests and benchmarks (config in pyproject.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from conftest import REPO


@pytest.mark.lint
def test_ruff_is_clean():
    ruff = shutil.which("ruff") or f"{sys.prefix}/bin/ruff"
    out = subprocess.run([ruff, "check", "minicontainer", "tests", "benchmarks"], cwd=REPO, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout + out.stderr
