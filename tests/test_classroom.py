"""The class host's learner client (minicontainer.classroom.client) against a real JupyterHub and its proxy.

The class host itself (PAM accounts, a systemd unit per learner) needs systemd: vagrant/acceptance.sh runs it
with MINICONTAINER_ACCEPTANCE_CLASS. Here the hub is the same JupyterHub, with its test authenticator (one
password) and its local-process spawner (each server a process of this machine, as root): what the client
does (the login form, a token of the learner's own, the server, a kernel's websocket) is the same.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import REPO, STARTUP_WAIT

from minicontainer.classroom.client import HubError, Learner

PROXY = "/var/cache/minicontainer/node/node_modules/.bin/configurable-http-proxy"  # ./lab test installs it
BIN = os.path.dirname(sys.executable)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    if not os.access(PROXY, os.X_OK):
        pytest.fail(f"{PROXY} is missing: ./lab test installs it with npm (vagrant/npm-packages.txt)")
    if not os.access(os.path.join(BIN, "jupyterhub"), os.X_OK):
        pytest.fail("jupyterhub is not installed in this venv: ./lab setup installs the 'class' extra")
    home = tmp_path_factory.mktemp("hub")
    port, api, hub_port, service = free_port(), free_port(), free_port(), free_port()
    (home / "config.py").write_text(f"""
c = get_config()
c.JupyterHub.bind_url = "http://127.0.0.1:{port}/"
c.JupyterHub.hub_port = {hub_port}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api}"
c.ConfigurableHTTPProxy.command = ["{PROXY}"]
c.JupyterHub.db_url = "sqlite:///{home}/hub.sqlite"
c.JupyterHub.cookie_secret_file = "{home}/cookie_secret"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = "card-password"
c.Authenticator.allowed_users = {{"learner01", "learner02"}}
c.Authenticator.admin_users = {{"teacher"}}
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{home}/home/{{username}}"
c.Spawner.cmd = ["{BIN}/jupyterhub-singleuser"]
c.Spawner.args = ["--allow-root"]
c.Spawner.environment = {{"MINICONTAINER_PROGRESS":
                          lambda spawner: f"{home}/home/{{spawner.user.name}}/.minicontainer/progress.jsonl"}}
# The instructor's view, as vagrant/class-host.sh sets it up.
c.JupyterHub.services = [{{"name": "instructor", "url": "http://127.0.0.1:{service}", "oauth_no_confirm": True,
                          "command": ["{sys.executable}", "-m", "minicontainer.classroom.instructor",
                                      "--lessons", "{REPO}/notebooks", "--home", "{home}/home/{{name}}"]}}]
c.JupyterHub.load_roles = [{{"name": "instructor-service", "services": ["instructor"],
                            "scopes": ["list:users", "read:users", "read:servers", "servers"]}}]
""")
    for name in ("learner01", "learner02", "teacher"):
        (home / "home" / name).mkdir(parents=True)
        shutil.copytree(os.path.join(REPO, "notebooks"), home / "home" / name / "lab")
    log = open(home / "hub.log", "w")
    process = subprocess.Popen([os.path.join(BIN, "jupyterhub"), "-f", str(home / "config.py")], cwd=home,
                               stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PATH": f"{BIN}:/usr/bin:/bin"},
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + STARTUP_WAIT
    while True:
        try:
            urllib.request.urlopen(url + "hub/api/", timeout=5).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail("the hub did not start:\n" + (home / "hub.log").read_text()[-3000:])
            time.sleep(0.3)
    try:
        yield url, home
    finally:
        process.send_signal(signal.SIGTERM)  # the hub stops the servers it spawned, and its proxy
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@contextlib.contextmanager
def kernel_of(hub_url: str, name: str):
    """A learner logged in, their server started, a kernel of it: (learner, kernel id); the kernel shut after."""
    learner = Learner(hub_url, name, "card-password")
    learner.log_in()
    learner.start_server()
    kernel = learner.start_kernel()
    try:
        yield learner, kernel
    finally:
        learner.shutdown_kernel(kernel)


def test_a_learner_logs_in_starts_a_server_and_runs_cells_in_one_kernel(hub):
    with kernel_of(hub[0], "learner01") as (learner, kernel):
        first, second = learner.run(kernel, ["answer = 6 * 7", "print(answer, flush=True)"])
    assert (first.status, second.status, second.stdout) == ("ok", "ok", "42\n")  # the second cell saw the first's
    learner.stop_server()


def test_a_failing_cell_stops_the_run_and_says_why(hub):
    with kernel_of(hub[0], "learner02") as (learner, kernel):
        results = learner.run(kernel, ["1 / 0", "print('not reached')"])
        every = learner.run(kernel, ["1 / 0", "print('reached')"], keep_going=True)  # a report of each cell
    assert [r.status for r in results] == ["error"] and results[0].error.startswith("ZeroDivisionError")
    assert [r.status for r in every] == ["error", "ok"] and every[1].stdout == "reached\n"
    learner.stop_server()


def test_a_wrong_password_is_refused_with_what_to_do(hub):
    with pytest.raises(HubError, match="refused learner01's user name or password: check the login card"):
        Learner(hub[0], "learner01", "not-the-card").log_in()


def run_cells(hub_url: str, name: str, cells: list[str]) -> None:
    with kernel_of(hub_url, name) as (learner, kernel):
        results = learner.run(kernel, cells)
    assert [r.status for r in results] == ["ok"] * len(cells), [r.error for r in results]


def test_the_instructor_sees_each_learners_checks_and_who_is_stuck_and_can_reset_a_lab(hub):
    url, home = hub
    # learner01 fails one exercise three times in a row; learner02 solves it. The checks run in their kernels,
    # through the hub, as a learner's notebook runs them.
    run_cells(url, "learner01", ["from minicontainer import lab",
                                 "for _ in range(3): assert not lab.check('welcome-pid-namespace', 1)"])
    run_cells(url, "learner02", ["from minicontainer import lab, namespaces",
                                 "assert lab.check('welcome-pid-namespace', namespaces.ns_inode('self', 'pid'))"])
    teacher = Learner(url, "teacher", "card-password")
    teacher.log_in()
    status, _, page = teacher._request("GET", "services/instructor/")
    rows = {m.group(1): m.group(0) for m in re.finditer(r"<tr><th>(learner\d+)</th>.*?</tr>", page)}
    assert "<td class=stuck>welcome-pid-namespace</td>" in rows["learner01"]
    assert "&#10007;3" in rows["learner01"] and "<td>0/" in rows["learner01"]
    assert "<td class=stuck></td>" in rows["learner02"] and "<td>1/" in rows["learner02"]
    assert "teacher" not in rows  # instructors are not learners

    with pytest.raises(HubError, match="403"):  # a learner may not see the class
        learner = Learner(url, "learner02", "card-password")
        learner.log_in()
        learner._request("GET", "services/instructor/")

    # The reset: learner01's server stops, fresh lessons, the old ones kept, work/ carried over.
    (home / "home" / "learner01" / "lab" / "01-namespaces.ipynb").write_text("{}")  # a lesson gone wrong
    (home / "home" / "learner01" / "lab" / "work").mkdir(exist_ok=True)
    (home / "home" / "learner01" / "lab" / "work" / "mine.txt").write_text("the learner's own")
    xsrf = re.search(r"action='/services/instructor/reset/learner01'><input type=\"hidden\" name=\"_xsrf\" "
                     r"value=\"([^\"]+)\"", page).group(1)
    teacher._request("POST", "services/instructor/reset/learner01", f"_xsrf={xsrf}".encode(),
                     {"Content-Type": "application/x-www-form-urlencoded"})
    assert not teacher._api("GET", "hub/api/users/learner01")["servers"]
    lab_dir = home / "home" / "learner01" / "lab"
    with open(os.path.join(REPO, "notebooks", "01-namespaces.ipynb")) as f:
        assert (lab_dir / "01-namespaces.ipynb").read_text() == f.read()
    assert (lab_dir / "work" / "mine.txt").read_text() == "the learner's own"
    kept = [p for p in (home / "home" / "learner01").iterdir() if p.name.startswith("lab.before-reset-")]
    assert len(kept) == 1 and (kept[0] / "01-namespaces.ipynb").read_text() == "{}"
