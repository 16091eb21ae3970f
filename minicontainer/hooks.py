"""OCI hooks: programs an engine asks the runtime to run at fixed points of a container's life.

Each hook is {path, args, env, timeout}; it gets the container's state (the JSON `state` prints) on its
stdin. Where and when, as the runtime spec (config.md, "POSIX-platform Hooks") has it:

    createRuntime (and the old prestart)  create, once the namespaces exist, before pivot_root; in the
                                          runtime's namespaces (the host's): here, the helper runs them
    createContainer                       create, right after; in the container's namespaces, before
                                          pivot_root: PID 1 runs them
    startContainer                        start, after the gate, before the command; in the container
                                          (paths inside its root): PID 1 runs them
    poststart                             start, once the command runs; the runtime's namespaces
    poststop                              delete, once the container is gone; the runtime's namespaces

A hook that fails before the command runs fails the operation (the container is torn down); poststart and
poststop failures are reported and change nothing. Engines use them for networking (CNI through prestart,
in old Podman), GPU set-up (nvidia-container-runtime's prestart hook) and bookkeeping.
"""

from __future__ import annotations

import json
import subprocess
import sys

from .errors import LabError

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
FATAL = ("prestart", "createRuntime", "createContainer", "startContainer")


def check(hooks: dict) -> list[str]:
    """What in a config's hooks is malformed, one entry each."""
    problems = [f"hooks.{kind}" for kind in hooks if kind not in KINDS]
    for kind, entries in hooks.items():
        for hook in entries if isinstance(entries, list) else []:
            if not isinstance(hook, dict) or not str(hook.get("path", "")).startswith("/"):
                problems.append(f"hooks.{kind} entry {hook!r} (a hook needs an absolute path)")
    return problems


def run(kind: str, hooks: dict, state: dict) -> None:
    """Run the config's hooks of one kind, in order, each with the state on its stdin. A failing hook of a
    FATAL kind raises a LabError; a later kind's failure is printed and the rest still run."""
    for hook in hooks.get(kind, []):
        command = hook.get("args") or [hook["path"]]
        env = dict(e.split("=", 1) for e in hook.get("env", []))
        try:
            done = subprocess.run(command, executable=hook["path"], input=json.dumps(state), text=True,
                                  env=env, capture_output=True, timeout=hook.get("timeout"), close_fds=True)
            failure = f"exited {done.returncode}: {done.stderr.strip()[-300:]}" if done.returncode else ""
        except subprocess.TimeoutExpired:
            failure = f"did not finish within {hook['timeout']} s"
        except OSError as e:
            failure = f"could not run: {e.strerror}"
        if not failure:
            continue
        message = f"{kind} hook {hook['path']} {failure}"
        if kind in FATAL:
            raise LabError(message, "the config asked for it, and the runtime spec ends the operation when such a "
                           "hook fails", "fix the hook, or remove it from the config", step=f"{kind} hooks")
        print(f"minicontainer: warning: {message}", file=sys.stderr)
