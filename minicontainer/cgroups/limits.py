"""Parsing the limits a learner types: sizes ("64M", "1.5G", "512k", "max"), CPUs, pids."""

from __future__ import annotations

import os
import re

from ..errors import LabError

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str | int, what: str = "memory limit") -> int | None:
    """Bytes for a size like 64M, 1.5G, 512k, 4096 or 64MiB; None for "max" (no limit)."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        text = str(text).strip()
        if text.lower() == "max":
            return None
        match = _SIZE.match(text)
        if not match:
            raise LabError(f"{what} {text!r} is not a size",
                           "a size is a number with an optional unit k, M, G or T (powers of 1024)",
                           "write it like 64M, 1.5G, 512k, 1048576, or max for no limit")
        value = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if value <= 0:
        raise LabError(f"{what} {text!r} must be more than zero",
                       "a zero limit would leave no room for even the first process",
                       "give a positive size such as 64M, or max for no limit")
    return value


def format_size(value: int | None) -> str:
    """64M for 67108864: the largest unit that divides it; "max" for no limit."""
    if value is None:
        return "max"
    for unit, factor in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("k", 1 << 10)):
        if value % factor == 0:
            return f"{value // factor}{unit}"
    return str(value)


def parse_cpus(text: str | float) -> float | None:
    """A CPU count like 0.5 or 2 (how many CPUs' worth of time per period); None for "max"."""
    if str(text).strip().lower() == "max":
        return None
    try:
        cpus = float(text)
    except ValueError:
        raise LabError(f"CPU limit {text!r} is not a number", "--cpus takes how many CPUs' worth of time to allow",
                       "write it like 0.5 (half a CPU) or 2") from None
    ncpu = os.cpu_count() or 1
    if not 0.01 <= cpus <= ncpu:
        raise LabError(f"CPU limit {text!r} is out of range",
                       f"this machine has {ncpu} CPU(s); the quota can be 0.01 to {ncpu}",
                       f"choose a value between 0.01 and {ncpu}")
    return cpus


def parse_pids(text: str | int) -> int | None:
    """A maximum number of processes (tasks) in the cgroup; None for "max"."""
    if str(text).strip().lower() == "max":
        return None
    try:
        pids = int(text)
    except ValueError:
        raise LabError(f"pids limit {text!r} is not a whole number", "--pids counts processes and threads",
                       "write it like 32, or max for no limit") from None
    if pids < 1:
        raise LabError(f"pids limit {text!r} must be at least 1", "the container's first process counts too",
                       "give a number such as 32")
    return pids
