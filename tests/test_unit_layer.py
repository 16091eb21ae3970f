"""The unit layer (tests/unit) needs no root: prove it by running it as an unprivileged user."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO
from test_rootless import UNPRIVILEGED


def test_the_unit_layer_runs_without_root():
    out = subprocess.run(UNPRIVILEGED + ["env", f"PYTHONPATH={REPO}", "HOME=/tmp", sys.executable, "-m", "pytest",
                                   "-q", "-p", "no:cacheprovider", os.path.join(REPO, "tests", "unit")],
                         capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    passed = int(out.stdout.strip().splitlines()[-1].split()[0])
    assert passed >= 100  # the layer really ran, as an unprivileged user
