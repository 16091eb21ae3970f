"""Exercises of notebooks/08-real-stack.ipynb."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time

from ...rootfs import DEFAULT_ROOTFS
from .. import Exercise
from . import Problems

ADDRESS = "10.88.8.2/24"


def _ip_json(pid: int | None, *args: str) -> list:
    """`ip -json ARGS`, in PID's network namespace (nsenter) or the host's (None)."""
    enter = ["nsenter", f"--net=/proc/{pid}/ns/net"] if pid else []
    out = subprocess.run([*enter, "ip", "-json", *args], capture_output=True, text=True, timeout=30)
    return json.loads(out.stdout or "[]") if out.returncode == 0 else []


def network_seen_from_the_kernel(pid: int) -> list[str]:
    """What is wrong with PID's network namespace for the task: an eth0 with ADDRESS, up, whose veth peer
    is in the host's network namespace."""
    links = {link["ifname"]: link for link in _ip_json(pid, "-details", "link", "show")}
    if "eth0" not in links:
        return [f"the container's network namespace has no eth0, only {sorted(links)}: the hook made nothing "
                "there (did it run in the container's namespace, or in the host's?)"]
    eth0 = links["eth0"]
    problems = []
    if eth0.get("linkinfo", {}).get("info_kind") != "veth":
        problems.append(f"eth0 is a {eth0.get('linkinfo', {}).get('info_kind', 'plain')} device, not one end of a "
                        "veth pair")
    addresses = [f"{a['local']}/{a['prefixlen']}" for a in
                 next(iter(_ip_json(pid, "address", "show", "dev", "eth0")), {}).get("addr_info", [])]
    if ADDRESS not in addresses:
        problems.append(f"eth0 has the addresses {addresses or 'none'}, not {ADDRESS}")
    if "UP" not in eth0.get("flags", []):
        problems.append("eth0 is DOWN: the kernel neither sends nor routes through an interface until it is up")
    peer = eth0.get("link_index")
    host_side = [link for link in _ip_json(None, "link", "show") if link.get("ifindex") == peer]
    if problems or "link_netnsid" not in eth0:
        return problems + ([] if "link_netnsid" in eth0 else ["eth0's peer is in the container's own network "
                                                              "namespace, not the host's"])
    if not host_side or host_side[0].get("link_index") != eth0["ifindex"]:
        problems.append("eth0's peer is not in the host's network namespace: the other end must stay outside, "
                        "where the host (or a bridge) can reach the container through it")
    return problems


# Without root (a class host's learner), the hook cannot be checked: Podman and the veth it makes need root here.
NEEDS_ROOT = ("this exercise runs your hook under Podman, whose storage and cgroups are root's on this machine, and "
              "plugs a veth into the host's network namespace, which needs root too; you run without it: do it in "
              "the lab VM")


def check_own_hook(answer) -> list[str]:
    """Run the learner's hook as a createRuntime hook of a container that Podman starts with
    minicontainer, then read the container's network from the kernel; remove everything after."""
    from .. import engines
    if not isinstance(answer, str) or not answer.startswith("#!"):
        return ["expected the hook's text, a script that starts with #! (for example '#!/bin/sh\\n...'), got "
                + (repr(answer[:40]) if isinstance(answer, str) else type(answer).__name__)]
    if os.geteuid() != 0:
        return [NEEDS_ROOT]
    workdir = tempfile.mkdtemp(prefix="lab-hook-")
    hook = os.path.join(workdir, "hook")
    with open(hook, "w") as f:
        f.write(answer)
    os.chmod(hook, 0o755)
    os.mkdir(os.path.join(workdir, "hooks.d"))
    with open(os.path.join(workdir, "hooks.d", "learner.json"), "w") as f:
        json.dump({"version": "1.0.0", "hook": {"path": hook}, "when": {"always": True},
                   "stages": ["createRuntime"]}, f)
    podman = engines.Podman(hooks_dir=os.path.join(workdir, "hooks.d"))
    name = f"hook-check-{os.getpid()}"
    try:
        podman("rm", "--force", "--time", "0", name, check=False)
        image = podman.import_image(DEFAULT_ROOTFS)
        started = podman.run("minicontainer", "-d", "--name", name, image, "sleep", "600", check=False)
        if started.returncode != 0:
            raise Problems("the container did not start: the runtime stops when a createRuntime hook fails. "
                           f"Podman said: {started.stderr.strip()[-600:]}")
        pid = int(podman("inspect", "--format", "{{.State.Pid}}", name).stdout)
        problems = network_seen_from_the_kernel(pid)
        peer = next(iter(_ip_json(pid, "link", "show", "eth0")), {}).get("link_index")
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)
        podman.remove_cgroups_if_unused()  # none left behind, unless the learner's own containers still run
        shutil.rmtree(workdir, ignore_errors=True)
    deadline = time.monotonic() + 5  # the kernel dismantles a namespace in the background
    while peer and [link for link in _ip_json(None, "link", "show") if link.get("ifindex") == peer]:
        if time.monotonic() > deadline:
            problems.append("the host's end of the pair outlived the container")
            break
        time.sleep(0.1)
    return problems


EXERCISES = [
    Exercise("engines-own-hook", "Write a createRuntime hook that plugs the container into a network as a CNI "
             "plugin does: one end of a veth pair is eth0 in the container's network namespace, with the address "
             f"{ADDRESS}, up; the other end stays in the host's namespace, named after PID 1's host PID "
             "(lab8-PID), so that two containers never clash.",
             hints=("The hook learns which container it serves from its stdin: print what the recording hook above "
                    "received. Which field leads to the container's namespaces?",
                    "The hook runs in the runtime's namespaces, the host's. `ip link add A type veth peer name B "
                    "netns PID` makes a pair with B already in PID's network namespace; `nsenter --target PID "
                    "--net CMD` runs CMD there.",
                    "An address alone is not enough: what must happen to an interface before the kernel sends "
                    "anything through it?"),
             checker=check_own_hook),
]
