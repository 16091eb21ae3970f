"""The class host's learner client (minicontainer.classroom.client) against a real JupyterHub and its proxy.

The class host itself (PAM accounts, a systemd unit per learner) needs systemd: vagrant/acceptance.sh runs it
with MINICONTAINER_ACCEPTANCE_CLASS. Here the hub is the same JupyterHub, with its test authenticator (one
password) and its local-process spawner (each server a process of this machine, as root): what the client
does (the login form, a token of the learner's own, the server, a kernel's websocket) is the same.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from conftest import STARTUP_WAIT

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
    port, api, hub_port = free_port(), free_port(), free_port()
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
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{home}/home/{{username}}"
c.Spawner.cmd = ["{BIN}/jupyterhub-singleuser"]
c.Spawner.args = ["--allow-root"]
""")
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
        yield url
    finally:
        process.send_signal(signal.SIGTERM)  # the hub stops the servers it spawned, and its proxy
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def test_a_learner_logs_in_starts_a_server_and_runs_cells_in_one_kernel(hub):
    learner = Learner(hub, "learner01", "card-password")
    learner.log_in()
    learner.start_server()
    kernel = learner.start_kernel()
    try:
        first, second = learner.run(kernel, ["answer = 6 * 7", "print(answer, flush=True)"])
    finally:
        learner.shutdown_kernel(kernel)
    assert (first.status, second.status, second.stdout) == ("ok", "ok", "42\n")  # the second cell saw the first's
    learner.stop_server()


def test_a_failing_cell_stops_the_run_and_says_why(hub):
    learner = Learner(hub, "learner02", "card-password")
    learner.log_in()
    learner.start_server()
    kernel = learner.start_kernel()
    try:
        results = learner.run(kernel, ["1 / 0", "print('not reached')"])
    finally:
        learner.shutdown_kernel(kernel)
    assert [r.status for r in results] == ["error"] and results[0].error.startswith("ZeroDivisionError")
    learner.stop_server()


def test_a_wrong_password_is_refused_with_what_to_do(hub):
    with pytest.raises(HubError, match="refused learner01's user name or password: check the login card"):
        Learner(hub, "learner01", "not-the-card").log_in()
