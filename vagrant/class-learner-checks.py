# Run by vagrant/acceptance.sh's class phase in a learner's kernel, through the hub
# (minicontainer.classroom.client --file), after a cell that sets OTHER (another learner) and OTHER_PID (the
# main process of that learner's server).
import os
import signal

from minicontainer.container import run
from minicontainer.spec import ContainerSpec


def oom_kills() -> int:
    """OOM kills in the learner's unit and everything below it (memory.events is hierarchical)."""
    own = open("/proc/self/cgroup").read().strip().split("::", 1)[1]  # .../jupyter-NAME-singleuser.service/lab
    with open(f"/sys/fs/cgroup{os.path.dirname(own)}/memory.events") as f:
        return int(dict(line.split() for line in f)["oom_kill"])


# A rootless container of this learner's, in a cgroup below the learner's delegated unit: its limit holds.
before = oom_kills()
result = run(ContainerSpec("/var/lib/minicontainer/rootfs/busybox",
                           ["sh", "-c", "x=$(head -c 64000000 /dev/zero | tr '\\0' a)"], memory="32M"))
print("rootless container, 32M, allocating 64M: exit", result.code, "; OOM kills in the unit:", oom_kills() - before)
assert result.code == -signal.SIGKILL and oom_kills() > before, result.stderr  # the OOM killer's SIGKILL


def refused(what, call):
    try:
        call()
    except (PermissionError, ProcessLookupError) as e:
        print(f"{what}: refused ({e})")
        return True
    print(f"{what}: ALLOWED")
    return False


# noqa: F821 below: OTHER and OTHER_PID come from the cell before.
checks = [refused(f"list /home/{OTHER}", lambda: os.listdir(f"/home/{OTHER}")),  # noqa: F821
          refused(f"signal {OTHER}'s server", lambda: os.kill(OTHER_PID, 0))]  # noqa: F821
checks.append(not os.path.exists(f"/proc/{OTHER_PID}"))  # noqa: F821
print(f"{OTHER}'s server in this learner's /proc:", "ABSENT" if checks[-1] else "VISIBLE")  # noqa: F821
assert all(checks)
