"""Every lesson run by a learner without root, as on a class host: uid 20000, a home of its own with its own
copy of the lessons, MINICONTAINER_LAB=class, a PATH without /usr/sbin, /dev/net/tun open to users as udev
makes it, and /proc mounted as systemd's ProtectProc=invisible mounts it for a class host's learner (both in a
private mount namespace: the host's node and /proc are not touched). Every code cell must run. Where the
host is pure cgroup v2, the learner starts in a cgroup delegated to it, as systemd's Delegate=yes gives one
(test_rootless's user_cgroup); lessons that need that (00's doctor, 03, 06, 07) run only there: in the cgroup v2 VM."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time

import pytest
from conftest import REPO
from test_rootless import STATE_ROOT, UID, user_cgroup  # noqa: F401  user_cgroup is a fixture

from minicontainer import cgroups

LESSONS = ["00-welcome", "01-namespaces", "02-rootfs", "03-cgroups", "04-network", "05-security",
           "06-putting-it-together", "07-claims", "08-real-stack"]
NEED_A_DELEGATED_CGROUP = {"00-welcome", "03-cgroups", "06-putting-it-together", "07-claims"}

# Runs in the learner's own process: every cell in order, in one kernel, on past errors (as a learner would go
# on); then each failed cell is printed, its first line and its error, and the exit status says how many.
RUNNER = """
import sys, nbformat
from nbclient import NotebookClient
notebook = nbformat.read(sys.argv[1], as_version=4)
client = NotebookClient(notebook, timeout=600, kernel_name="python3", allow_errors=True,
                        resources={"metadata": {"path": sys.argv[2]}})
client.execute()
failed = []
for number, cell in enumerate(c for c in notebook.cells if c.cell_type == "code"):
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            first = (cell.source.strip().splitlines() or [""])[0][:100]
            failed.append(f"code cell {number} ({first}): {output['ename']}: {output['evalue'][:1500]}")
if failed:
    sys.exit("\\n".join(failed))
"""


def pure_v2() -> bool:
    layout = cgroups.detect()
    return bool(layout.controllers) and all(c.version == 2 for c in layout.controllers.values())


@pytest.fixture
def learner_home():
    home = tempfile.mkdtemp(prefix="learner-home-")
    os.chown(home, UID, UID)
    os.chmod(home, 0o700)
    try:
        yield home
    finally:
        shutil.rmtree(home)


def run_as_learner(lesson: str, home: str, in_cgroup: str | None) -> subprocess.CompletedProcess:
    lab = os.path.join(home, "lab")
    shutil.copytree(os.path.join(REPO, "notebooks"), lab)
    subprocess.run(["chown", "-R", f"{UID}:{UID}", lab], check=True)
    python = os.path.join(REPO, ".venv", "bin", "python")
    # Where the machine has no TUN device at all (the cgroup v2 VM), lesson 04's section 8 is what fails. /proc
    # as a class host's learner unit has it (systemd's ProtectProc=invisible): a process only for who may trace it.
    setup = ('{ [ ! -e /dev/net/tun ] || { mount -t tmpfs learner-tun "$0" && mknod -m 666 "$0/tun" c 10 200 && '
             'mount --bind "$0/tun" /dev/net/tun; }; } && mount -t proc -o hidepid=invisible learner-proc /proc && '
             '{ [ -z "$1" ] || echo $$ > "$1/cgroup.procs"; } && shift && exec "$@"')
    with tempfile.TemporaryDirectory() as scratch:
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c", setup, scratch, in_cgroup or "",
             "setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "env", "-i", f"HOME={home}",
             "PATH=/usr/local/bin:/usr/bin:/bin", "MINICONTAINER_LAB=class", python, "-c", RUNNER,
             os.path.join(lab, f"{lesson}.ipynb"), lab],
            capture_output=True, text=True, timeout=1200, cwd=lab)


@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("lesson", LESSONS)
def test_every_cell_runs_for_a_learner_without_root(image, learner_home, request, lesson):
    if not os.access(os.path.join(REPO, ".venv", "bin", "python"), os.X_OK):
        pytest.fail("the venv is missing: ./lab setup makes it")
    readable = subprocess.run(["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups", "test", "-r",
                               os.path.join(REPO, "notebooks")], cwd="/")
    if readable.returncode != 0:
        pytest.fail(f"uid {UID} cannot read {REPO}: a learner's kernel runs the checkout's venv")
    in_cgroup = None
    if pure_v2():
        top, leaf, delegate = request.getfixturevalue("user_cgroup")
        delegate()
        in_cgroup = leaf
    elif lesson in NEED_A_DELEGATED_CGROUP:
        pytest.skip("this host's cgroups are hybrid: a learner is delegated a cgroup on pure v2 only (the cgroup "
                    "v2 VM runs this lesson as a learner)")
    out = run_as_learner(lesson, learner_home, in_cgroup)
    assert out.returncode == 0, f"{lesson}, as uid {UID}:\n{out.stderr[-4000:]}"
    left = [n for n in os.listdir(STATE_ROOT) if not n.startswith(".")] if os.path.isdir(STATE_ROOT) else []
    assert not left, f"the learner's run left containers' state behind: {left}"
    deadline = time.monotonic() + 15  # the kernel's shared helper ends once the kernel has
    while (stray := subprocess.run(["pgrep", "-u", str(UID)], capture_output=True, text=True).stdout.split()) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not stray, f"processes of uid {UID} outlived the lesson: {stray}"
