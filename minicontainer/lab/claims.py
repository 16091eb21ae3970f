"""Notebook 07 judges the explainer this lab was made from (seed.txt, shipped as written), sentence by
sentence: its sentences, the verdicts, and the measurements, read from cgroupfs, /proc and the page cache.

Each helper reads or writes one kernel interface, named in its body, on cgroup v2 and on v1:
CPU time used (cpu.stat usage_usec / cpuacct.usage), the CPU weight (cpu.weight / cpu.shares),
pressure stall information (a v2 cgroup's cpu.pressure, or the system-wide /proc/pressure/cpu),
the memory guarantees (memory.min and memory.low, v2 only) and a file's pages in the page cache.
Nothing here forks or enters a namespace: the notebook's kernel may call all of it.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import re
import time

from ..errors import LabError

# A libc of our own, so these prototypes do not change the runtime's shared one (kernel.libc).
_libc = ctypes.CDLL("libc.so.6", use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
MAP_FAILED = ctypes.c_void_p(-1).value

SEED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "seed.txt")
SEED_TITLE_LINES = 3  # its title, repeated, as the explainer was saved
SENTENCE_END = re.compile(r"(?<=\.)\s+(?=[A-Z])")

# Each sentence's verdict as a whole; notebook 07 says which words of it hold and which do not.
VERDICTS = {1: "partly", 2: "false", 3: "partly", 4: "true", 5: "false", 6: "false", 7: "partly", 8: "true",
            9: "true", 10: "partly", 11: "partly", 12: "partly", 13: "false", 14: "false", 15: "partly",
            16: "partly", 17: "true", 18: "false", 19: "partly", 20: "partly"}


def seed_sentences(path: str = SEED) -> list[str]:
    """The explainer's sentences in order, numbered from 1 as notebook 07 numbers them: its lines after the
    title, without the headings ("Examples:"), each line split after a full stop that a capital follows."""
    with open(path) as f:
        lines = [line.strip() for line in f.read().splitlines()[SEED_TITLE_LINES:]]
    return [sentence for line in lines if line and not line.endswith(":") for sentence in SENTENCE_END.split(line)]


def score(predictions: dict) -> tuple[int, dict]:
    """How many predictions match the verdicts, and those that differ: {number: (yours, verdict)}."""
    given = {n: str(p).strip().lower() for n, p in predictions.items() if p}
    differ = {n: (p, VERDICTS.get(n)) for n, p in given.items() if p != VERDICTS.get(n)}
    return len(given) - len(differ), differ


def usage_above(box) -> int:
    """Memory (bytes) charged to the cgroup that holds the container's own: every cgroup's usage counts in
    each one above it, up to the root's, which is the whole machine's (v2 memory.current, v1
    memory.usage_in_bytes)."""
    directory = os.path.dirname(box.cgroup.dirs["memory"])
    for name in ("memory.current", "memory.usage_in_bytes"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            with open(path) as f:
                return int(f.read())
    raise LabError(f"no memory usage file in {directory}", "its memory controller is not enabled there",
                   "run `minicontainer doctor`")


# v2's cpu.weight is 1..10000 (default 100); v1's cpu.shares is 2..262144 (default 1024).
V1_SHARES_PER_WEIGHT = 1024 / 100


def cpus_used(boxes: dict, seconds: float = 1.5) -> dict:
    """How many CPUs each container used over the next `seconds`, from its cgroup's CPU time counter."""
    before = {name: box.stats()["cpu_usage_usec"] for name, box in boxes.items()}
    start = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - start
    return {name: (box.stats()["cpu_usage_usec"] - before[name]) / 1e6 / elapsed for name, box in boxes.items()}


def set_cpu_weight(box, weight: int) -> str:
    """Give the container's cgroup a CPU weight (v2 cpu.weight, 1..10000; v1 cpu.shares, scaled).
    Returns the file written, so the lesson can show it."""
    if not 1 <= weight <= 10000:
        raise LabError(f"CPU weight {weight} is out of range", "cpu.weight takes 1 to 10000 (default 100)",
                       "give a weight between 1 and 10000")
    directory = box.cgroup.dirs.get("cpu")
    if directory is None:
        raise LabError("this host has no cpu cgroup controller", "the weight lives in the cpu controller's files",
                       "run `minicontainer doctor`")
    weight_file = os.path.join(directory, "cpu.weight")
    if os.path.exists(weight_file):
        value = str(weight)
    else:
        weight_file, value = os.path.join(directory, "cpu.shares"), str(max(2, round(weight * V1_SHARES_PER_WEIGHT)))
    with open(weight_file, "w") as f:
        f.write(value)
    return weight_file


def parse_pressure(text: str) -> dict:
    """A PSI file ("some avg10=0.00 avg60=0.00 avg300=0.00 total=123") as {"some": total_usec, ...}."""
    result = {}
    for line in text.splitlines():
        kind, *fields = line.split()
        values = dict(field.split("=", 1) for field in fields)
        result[kind] = int(values["total"])
    return result


def pressure_file(box) -> str | None:
    """Where CPU pressure can be read for this container: its own v2 cgroup's cpu.pressure; otherwise the
    whole system's /proc/pressure/cpu; None where the kernel keeps no PSI (built without it, or psi=0)."""
    own = os.path.join(box.cgroup.dirs.get("cpu", "/nonexistent"), "cpu.pressure")
    for path in (own, "/proc/pressure/cpu"):
        try:
            with open(path) as f:
                parse_pressure(f.read())
            return path
        except (FileNotFoundError, OSError):  # absent, or EOPNOTSUPP when PSI is switched off at boot
            continue
    return None


def stalled_usec(path: str | None) -> int | None:
    """Total time (µs) some task waited for a CPU, from a PSI file; None without PSI."""
    if path is None:
        return None
    with open(path) as f:
        return parse_pressure(f.read())["some"]


def memory_guarantees(box) -> dict:
    """The memory a container is promised, not capped at: memory.min (never reclaimed) and memory.low
    (reclaimed last), in bytes. cgroup v1 has neither: {} there."""
    directory = box.cgroup.dirs.get("memory")
    found = {}
    for name in ("memory.min", "memory.low"):
        path = os.path.join(directory or "/nonexistent", name)
        if os.path.exists(path):
            with open(path) as f:
                text = f.read().strip()
            found[name] = None if text == "max" else int(text)
    return found


def drop_from_page_cache(path: str) -> None:
    """Ask the kernel to forget a file's clean cached pages (posix_fadvise DONTNEED): only a cache, so
    harmless; the next read comes from the disk again."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def cached_bytes(path: str) -> int:
    """How much of a file is in the page cache now: mincore(2) on a shared read-only mapping of it, one byte
    per page whose lowest bit says "resident". Not cachestat(2), which util-linux 2.40+'s fincore prefers:
    asked about a file on overlayfs (a container host's /var/tmp, the lab's test VMs) it answers about the
    overlay's own empty cache, 0, while a mapping reaches the real file's pages."""
    size = os.path.getsize(path)
    if size == 0:
        return 0
    page = os.sysconf("SC_PAGE_SIZE")
    fd = os.open(path, os.O_RDONLY)
    try:
        address = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    finally:
        os.close(fd)  # the mapping keeps the file
    if address == MAP_FAILED:
        err = ctypes.get_errno()
        raise LabError(f"could not map {path} to count its cached pages", f"mmap: {os.strerror(err)}",
                       "give a regular file this process can read")
    try:
        resident = (ctypes.c_ubyte * ((size + page - 1) // page))()
        if _libc.mincore(address, size, resident) != 0:
            err = ctypes.get_errno()
            raise LabError(f"mincore could not read {path}'s pages", os.strerror(err),
                           "give a regular file on a local filesystem")
        return min(size, page * sum(byte & 1 for byte in resident))
    finally:
        _libc.munmap(address, size)


def namespace_in_use(link: str) -> bool:
    """Whether any process on the host is in the namespace a /proc/PID/ns link names ("uts:[4026...]")."""
    kind = link.split(":", 1)[0]
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/ns/{kind}") == link:
                return True
        except OSError:  # gone meanwhile
            continue
    return False


def cpu_and_stall(box, seconds: float = 1.5) -> tuple[float, float | None]:
    """CPUs the container used over `seconds`, and how long (s) tasks waited for a CPU meanwhile by PSI
    (its own v2 cgroup's, else the whole system's; None without PSI)."""
    psi = pressure_file(box)
    before = stalled_usec(psi)
    used = cpus_used({"box": box}, seconds)["box"]
    after = stalled_usec(psi)
    return used, None if before is None else (after - before) / 1e6


def proc_hides_untraceable() -> bool:
    """Is /proc mounted to show (or open) a process only to those who may trace it: hidepid=1, 2 or 4 (noaccess,
    invisible, ptraceable), as systemd's ProtectProc=invisible mounts it for a class host's learner? A process in
    a user namespace of its own may trace nothing outside that namespace, even its own user's."""
    hidepid = "off"
    for line in open("/proc/self/mountinfo"):  # the last mount on /proc is the one that shows
        fields, _, super_part = line.partition(" - ")
        if fields.split()[4] == "/proc":
            options = (super_part.split()[2:3] or [""])[0].split(",")
            hidepid = next((o.split("=", 1)[1] for o in options if o.startswith("hidepid=")), "off")
    return hidepid not in ("0", "off")


def memory_cgroup(pid: int) -> str:
    """The cgroup that counts a process's memory, from the kernel's /proc/PID/cgroup: the memory
    controller's line on v1 (or hybrid), the single "0::" line on v2."""
    with open(f"/proc/{pid}/cgroup") as f:
        lines = f.read().splitlines()
    line = next((entry for entry in lines if ":memory:" in entry), None)
    line = line or next(entry for entry in lines if entry.startswith("0::"))
    return line.split(":", 2)[2]


def cpu_limit_files(box) -> dict:
    """The files that hold a container's CPU limit, as the kernel shows them: cpu.max on v2
    ("QUOTA PERIOD" in µs), cpu.cfs_quota_us and cpu.cfs_period_us on v1."""
    directory = box.cgroup.dirs.get("cpu", "/nonexistent")
    found = {}
    for name in ("cpu.max", "cpu.cfs_quota_us", "cpu.cfs_period_us"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            with open(path) as f:
                found[name] = f.read().strip()
    return found
