# Run by vagrant/acceptance.sh's class phase in a learner's kernel, through the hub
# (minicontainer.classroom.client --file), after a cell that sets OTHER (another learner) and OTHER_PID (the
# main process of that learner's server). From inside this learner's unit (ProtectProc=invisible, Delegate=yes,
# MemoryMax, TasksMax, CPUQuota), it checks, printing each result and asserting all at the end:
# - a rootless container of this learner's is OOM-killed at its own memory limit, below the unit's cgroup;
# - the other learner's home cannot be listed, their server cannot be signalled, and is absent from /proc;
# - their server's namespaces cannot be joined: /proc/OTHER_PID/ns/* does not even exist here (ProtectProc), and
#   setns(2) through a pidfd (which /proc's hiding does not stop) is refused;
# - their unit's cgroup cannot be written (cgroup.procs, limits, a new cgroup), while this learner's own can;
# - a fork loop stops at this unit's TasksMax (pids.events counts it) and does not touch the other's unit;
# - a CPU burn on more CPUs than CPUQuota gives is throttled (cpu.stat), to no more than the quota per period.
import errno
import os
import signal
import subprocess
import sys
import time

from minicontainer.container import run
from minicontainer.spec import ContainerSpec

OTHER, OTHER_PID = globals()["OTHER"], globals()["OTHER_PID"]  # set by the cell before
# This kernel's cgroup: .../jupyter-NAME-singleuser.service/lab, the leaf of this learner's unit.
OWN = "/sys/fs/cgroup" + open("/proc/self/cgroup").read().strip().split("::", 1)[1]
UNIT = os.path.dirname(OWN)
OTHER_UNIT = os.path.join(os.path.dirname(UNIT), f"jupyter-{OTHER}-singleuser.service")
checks = []


def check(what, ok, said):
    print(f"{what}: {said}" + ("" if ok else "   <-- NOT AS EXPECTED"))
    checks.append(ok)


def attempt(call, *args):
    """What the kernel said to call(*args): "allowed", or the errno's name."""
    try:
        call(*args)
        return "allowed"
    except OSError as e:
        return errno.errorcode[e.errno]


def write(path, text):
    fd = os.open(path, os.O_WRONLY)  # unbuffered: the kernel's answer comes from this write, not a later flush
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def read(path):
    with open(path) as f:
        return f.read().strip()


def counters(directory, name):
    with open(os.path.join(directory, name)) as f:
        return {k: int(v) for k, v in (line.split() for line in f)}


def oom_kills() -> int:
    """OOM kills in the learner's unit and everything below it (memory.events is hierarchical)."""
    return counters(UNIT, "memory.events")["oom_kill"]


# A rootless container of this learner's, in a cgroup below the learner's delegated unit: its limit holds.
before = oom_kills()
result = run(ContainerSpec("/var/lib/minicontainer/rootfs/busybox",
                           ["sh", "-c", "x=$(head -c 64000000 /dev/zero | tr '\\0' a)"], memory="32M"))
check("rootless container, 32M, allocating 64M", result.code == -signal.SIGKILL and oom_kills() > before,
      f"exit {result.code}; OOM kills in the unit: {oom_kills() - before}; {result.stderr[-300:]}")

# What of the other learner's this one cannot reach.
said = attempt(os.listdir, f"/home/{OTHER}")
check(f"list /home/{OTHER}", said == "EACCES", said)
said = attempt(os.kill, OTHER_PID, 0)
check(f"signal {OTHER}'s server", said == "EPERM", said)  # kill(2) finds it by PID: hidden only in /proc
check(f"{OTHER}'s server in this learner's /proc", not os.path.exists(f"/proc/{OTHER_PID}"),
      "VISIBLE" if os.path.exists(f"/proc/{OTHER_PID}") else "ABSENT")

# Joining the other's server's namespaces. Through /proc there is nothing to open: ProtectProc=invisible hides the
# process (ENOENT). A pidfd finds a process by its PID without /proc, so setns(2) itself is reached: it checks
# ptrace access to the target first (another uid, no CAP_SYS_PTRACE: EPERM), then privilege over the namespace.
SETNS = """
import ctypes, errno, os, sys
flag = {"user": 0x10000000, "mnt": 0x00020000, "pid": 0x20000000, "net": 0x40000000}[sys.argv[2]]
libc = ctypes.CDLL(None, use_errno=True)
try:
    fd = os.pidfd_open(int(sys.argv[1]))
    print("allowed" if libc.setns(fd, flag) == 0 else errno.errorcode[ctypes.get_errno()])
except OSError as e:
    print(errno.errorcode[e.errno])
"""


def setns_through_pidfd(kind):
    """In a process of its own, which a namespace joined would change (and setns needs a single thread)."""
    return subprocess.run([sys.executable, "-c", SETNS, str(OTHER_PID), kind], capture_output=True, text=True,
                          check=True).stdout.strip()


for kind in ("user", "mnt", "pid", "net"):
    said = attempt(os.open, f"/proc/{OTHER_PID}/ns/{kind}", os.O_RDONLY)  # (an fd, if ever, left to the exit)
    check(f"open /proc/{OTHER_PID}/ns/{kind}", said == "ENOENT", said + (" (not even visible)" * (said == "ENOENT")))
    said = setns_through_pidfd(kind)
    check(f"setns into {OTHER}'s server's {kind} namespace through a pidfd", said == "EPERM", said)

# The other's unit's cgroup: its cgroup.procs is theirs (Delegate=yes chowns it to them), its limits root's; a
# cgroup made there would be a way around them. Writing "0" moves the writer: into this learner's own leaf (where
# this kernel is already) it is allowed, so the refusals are not of every write.
said = attempt(write, os.path.join(OWN, "cgroup.procs"), "0")
check("move this kernel into its own leaf (the counterfactual)", said == "allowed", said)
for name in ("cgroup.procs", "lab/cgroup.procs", "cgroup.subtree_control", "pids.max", "memory.max", "cpu.max"):
    said = attempt(write, os.path.join(OTHER_UNIT, name), "0" if "procs" in name else "max")
    check(f"write {OTHER_UNIT}/{name}", said in ("EACCES", "EPERM"), said)
said = attempt(os.mkdir, os.path.join(OTHER_UNIT, "mine"))
check(f"mkdir in {OTHER_UNIT}", said in ("EACCES", "EPERM"), said)


def fork_refusals(directory):
    """The pids "max" events of a unit and every cgroup below it: the kernel counts a refused fork in the cgroup
    that forked (before Linux 6.13) or the one whose limit was hit, here one or the other, both in the unit."""
    return sum(counters(d, "pids.events")["max"] for d, _, files in os.walk(directory) if "pids.events" in files)


def procs(directory):
    return read(os.path.join(directory, "cgroup.procs")).split()


# TasksMax: fork until the kernel refuses. Each child is a `head -c 1` waiting on one pipe (a few hundred KB, not a
# copy of this kernel), all released at once by closing it; while the unit is full, this kernel and its server
# cannot start a thread either, so the counters are read first and the children released straight after.
tasks_max, other_before, own_before = read(f"{UNIT}/pids.max"), fork_refusals(OTHER_UNIT), fork_refusals(UNIT)
r, w = os.pipe()
held, refused = [], None
try:
    while tasks_max != "max" and len(held) < int(tasks_max):  # never more than the limit: it must stop first
        held.append(subprocess.Popen(["head", "-c", "1"], stdin=r, stdout=subprocess.DEVNULL))
except OSError as e:
    refused = errno.errorcode[e.errno]
full = read(f"{UNIT}/pids.current")
own_after = fork_refusals(UNIT)
os.close(w)
for child in held:
    child.wait()
os.close(r)
check(f"fork loop under TasksMax {tasks_max}", refused == "EAGAIN" and own_after > own_before,
      f"{len(held)} forked, then {refused}; pids.current {full} of {tasks_max}; refusals counted in the unit: "
      f"{own_after - own_before}")
other_alive = str(OTHER_PID) in procs(OTHER_UNIT + "/lab")  # cgroup.procs lists it, whatever /proc hides
check(f"{OTHER}'s unit meanwhile", fork_refusals(OTHER_UNIT) == other_before and other_alive,
      f"refused forks there: {fork_refusals(OTHER_UNIT) - other_before}; its server still in its cgroup: {other_alive}")

# CPUQuota: burn on more CPUs than the quota gives, until the kernel has throttled the unit 3 more times. What the
# unit used meanwhile is at most its quota in each period the kernel enforced, plus a period's for the first,
# partial, one and one for a tick's overrun on each CPU.
quota, period = read(f"{UNIT}/cpu.max").split()
burners = int(quota) // int(period) + 1 if quota != "max" else 0
cpu_before = counters(UNIT, "cpu.stat")
if quota == "max" or os.cpu_count() < burners:
    check("CPU burn", False, f"cpu.max is {quota} {period} on {os.cpu_count()} CPUs: nothing to exceed")
else:
    burning = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(burners)]
    give_up = time.monotonic() + 300  # only a bound on the run: what is checked comes from the kernel's counters
    while counters(UNIT, "cpu.stat")["nr_throttled"] < cpu_before["nr_throttled"] + 3 and time.monotonic() < give_up:
        time.sleep(0.1)
    for burner in burning:
        burner.kill()
        burner.wait()
    cpu = {k: v - cpu_before[k] for k, v in counters(UNIT, "cpu.stat").items()}
    check(f"{burners} processes burning under CPUQuota ({quota} {period})",
          cpu["nr_throttled"] >= 3 and cpu["usage_usec"] <= (cpu["nr_periods"] + 2) * int(quota),
          f"throttled in {cpu['nr_throttled']} of {cpu['nr_periods']} periods; used {cpu['usage_usec']} us, at most "
          f"{int(quota)} us a period")

print(f"{sum(checks)} of {len(checks)} checks as expected")
assert all(checks)
