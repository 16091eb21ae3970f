"""The same bundle under another runtime (runc, crun), seen by the kernel: for notebook 06.

kernel_view() reads what the kernel holds of a container's first process; view_under() starts an
OCI bundle with runc or crun in a helper of its own session (so the container is deleted even if
the notebook dies meanwhile) and reads the same.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from .. import inspect, namespaces
from ..errors import LabError
from ..process import spawn


def kernel_view(pid: int) -> dict:
    """What the kernel shows of a container's first process, from /proc and cgroupfs: its own
    namespaces, cgroup limits, hostname, each capability set, no_new_privs, how many seccomp filters
    it runs under, whether its / is read-only, where things are mounted (as it sees its root), and whether
    its network namespace's lo is up."""
    stats = inspect.cgroup_of(pid).stats()
    process, status = inspect.process(pid), inspect.status(pid)
    table = inspect.mounts(pid)
    view = {"own namespaces": sorted(set(namespaces.identities(pid)) - set(namespaces.shared_with(pid))),
            "memory limit": stats["memory_limit"], "pids limit": stats["pids_limit"],
            "cpu limit": stats["cpu_limit"], "hostname": inspect.hostname(pid)}
    for name in ("bounding", "effective", "permitted", "inheritable", "ambient"):
        view[f"capabilities {name}"] = sorted(process.capabilities[name])
    # Seccomp_filters (Linux 5.9+) counts the filters; older kernels show only the mode (2: filtering).
    view["seccomp filters"] = int(status.get("Seccomp_filters", status.get("Seccomp", "0") != "0"))
    view["no_new_privs"] = process.no_new_privs
    view["signals ignored"] = status.get("SigIgn")  # a bit mask: what execve carried over from the runtime
    view["root read-only"] = any(m.mount_point == "/" and "ro" in m.options.split(",") for m in table)
    view["mount points"] = sorted({m.mount_point for m in table})
    # lo up: the kernel then adds 127.0.0.1's local route, in the routing tables of the process's netns.
    with open(f"/proc/{pid}/net/fib_trie") as f:
        view["loopback up"] = "127.0.0.1" in f.read()
    return view


def differences(ours: dict, theirs: dict) -> dict:
    """The keys of two kernel views that differ: key -> (ours, theirs); for mount points, what only
    one of them has."""
    found = {}
    for key in ours:
        if ours[key] == theirs.get(key):
            continue
        if key == "mount points":
            found[key] = (sorted(set(ours[key]) - set(theirs[key])), sorted(set(theirs[key]) - set(ours[key])))
        else:
            found[key] = (ours[key], theirs.get(key))
    return found


def view_under(runtime: str, bundle: str) -> dict:
    """Start the bundle with runc or crun, read kernel_view of it, delete it. Runs in a helper process
    of its own session, so the container is deleted even if the caller (a notebook) dies meanwhile."""
    if not shutil.which(runtime):
        raise LabError(f"{runtime} is not installed", "the comparison runs the same bundle under it",
                       f"apt-get install {runtime}")
    out = spawn.run_forked("minicontainer.lab.compare", runtime, bundle, capture_output=True, text=True,
                           start_new_session=True, timeout=60)
    if out.returncode != 0:
        raise LabError(f"{runtime} could not run the bundle: {out.stderr.strip()[-400:]}",
                       "see its message", "check the bundle with `runc spec` defaults")
    return json.loads(out.stdout)


def _run_and_view(runtime: str, bundle: str) -> dict:
    with open(os.path.join(bundle, "config.json")) as f:
        config = json.load(f)
    config["process"]["terminal"] = False
    if os.geteuid() == 0:
        # Relative: below the runtime's own cgroup (v1), or beside it in its parent (v2); never at the top of the
        # machine's tree. Rootless, none: runc then makes no cgroup unless it is given limits.
        config["linux"]["cgroupsPath"] = f"{runtime}-view-{os.getpid()}"
    with tempfile.TemporaryDirectory() as state, tempfile.TemporaryDirectory() as copy:
        with open(os.path.join(copy, "config.json"), "w") as f:
            json.dump({**config, "root": {**config["root"], "path": os.path.join(bundle, config["root"]["path"])}}, f)
        name = f"view-{os.getpid()}"
        base = [runtime, "--root", state]
        try:
            # A file, not a pipe: the detached container keeps runc's stderr open, and a pipe would never end.
            with tempfile.TemporaryFile("w+") as errors:
                started = subprocess.run(base + ["run", "-d", "--pid-file", os.path.join(state, "pid"), "--bundle",
                                                 copy, name], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=errors, timeout=30)
                if started.returncode != 0:
                    errors.seek(0)
                    sys.exit(errors.read().strip())  # its own words, for view_under's error
            pid = int(open(os.path.join(state, "pid")).read())
            time.sleep(0.2)
            return kernel_view(pid)
        finally:
            subprocess.run(base + ["delete", "-f", name], capture_output=True, timeout=30)


if __name__ == "__main__":  # python -m minicontainer.lab.compare RUNTIME BUNDLE: see view_under
    print(json.dumps(_run_and_view(sys.argv[1], sys.argv[2])))
