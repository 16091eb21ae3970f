"""The one way to start a fresh interpreter of this same minicontainer, installed or not.

A Jupyter kernel is multithreaded, so it never unshares, forks or setns itself: the helper,
`exec`, the doctor's probe and every look inside another namespace run in a fresh process: a fresh
interpreter, or (run_forked) a fork of the caller's shared helper, which has imported the runtime.
"""

from __future__ import annotations

import os
import subprocess
import sys

# This caller's shared helper (process/shared.py's Client), once it has started one: it sets this.
shared_client = None

PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def env() -> dict:
    """The environment in which the fresh interpreter imports this same minicontainer."""
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_PARENT, environment.get("PYTHONPATH")) if p)
    return environment


def command(module: str, *args: str) -> list[str]:
    """python -m MODULE ARGS..., with this interpreter."""
    return [sys.executable, "-m", module, *map(str, args)]


def run(module: str, *args: str, **options) -> subprocess.CompletedProcess:
    """Run python -m MODULE ARGS to its end (subprocess.run's options apply)."""
    return subprocess.run(command(module, *args), env=env(), **options)


def run_forked(module: str, *args: str, **options) -> subprocess.CompletedProcess:
    """As run, forked by this caller's shared helper when it has one (process/shared.py: a notebook that has
    started a container): the same fresh process for setns, without an interpreter's start. Options:
    capture_output, text, input, timeout (its process runs in the shared helper's session)."""
    client = shared_client
    if client is None or client.owner != os.getpid() or not client.alive() or os.environ.get("MINICONTAINER_HELPER"):
        return run(module, *args, **options)
    return client.run_module(module, args, **options)


def start(module: str, *args: str, **options) -> subprocess.Popen:
    """Start python -m MODULE ARGS and return at once (subprocess.Popen's options apply)."""
    return subprocess.Popen(command(module, *args), env=env(), **options)
