"""A container's cgroup as a systemd scope, for engines that run with systemd's cgroup manager.

Where systemd is PID 1 it owns the cgroup tree: a runtime that mkdirs there works beside it, and
systemd may move or remove what it does not know. So an engine configured for systemd (Podman's
default `--cgroup-manager systemd`, containerd's SystemdCgroup = true) passes `--systemd-cgroup` and a
cgroupsPath of the form `slice:prefix:name`, and the runtime asks systemd over D-Bus for a transient
scope unit, `prefix-name.scope` in `slice`, with Delegate=yes: the scope's cgroup is then the
runtime's to write (limits, the device program), and systemd removes it when its last process exits.

A scope is made with at least one process in it: the process that asks (here, the helper, which
then forks the container's first process inside it and leaves). D-Bus goes through jeepney, a small,
pure-Python D-Bus library: the protocol's marshalling is not ours to write again.
"""

from __future__ import annotations

import os
import re
import time

from ..errors import LabError

BUS_SOCKET = "/run/dbus/system_bus_socket"
UNIT_NAME = re.compile(r"^[A-Za-z0-9:_.\\-]+$")


def available() -> str | None:
    """None if systemd runs this machine and its bus answers here; else why not."""
    try:
        with open("/proc/1/comm") as f:
            init = f.read().strip()
    except OSError:
        init = "?"
    if init != "systemd":
        return f"PID 1 here is {init}, not systemd"
    if not os.path.exists(BUS_SOCKET):
        return f"no system bus ({BUS_SOCKET} is missing)"
    return None


def refuse_unless_available() -> None:
    why = available()
    if why:
        raise LabError(f"--systemd-cgroup needs systemd: {why}", "a scope unit is asked of systemd over D-Bus, "
                       "and only a machine that systemd runs has one", "configure the engine for cgroupfs "
                       "(podman --cgroup-manager cgroupfs; containerd's runc options SystemdCgroup = false)")


def parse(path: str) -> tuple[str, str]:
    """cgroupsPath "slice:prefix:name" -> (slice, unit): as runc reads it, an empty slice is system.slice
    and the unit is prefix-name.scope (name alone when prefix is empty)."""
    parts = path.split(":")
    if len(parts) != 3 or not parts[2]:
        raise LabError(f"cgroupsPath {path!r} is not slice:prefix:name", "with --systemd-cgroup the engine names "
                       "a systemd slice and a scope", "e.g. system.slice:libpod:ID")
    slice_, prefix, name = parts
    slice_ = slice_ or "system.slice"
    unit = name if name.endswith(".scope") else f"{prefix}-{name}.scope" if prefix else f"{name}.scope"
    for part in (slice_, unit):
        if not UNIT_NAME.match(part) or part.startswith("-") and part != "-.slice":
            raise LabError(f"{part!r} is not a systemd unit name", "unit names are letters, digits and :_.\\-",
                           "give the engine a plain container id")
    if not slice_.endswith(".slice"):
        raise LabError(f"{slice_!r} is not a slice", "the first field of slice:prefix:name names a .slice unit",
                       "e.g. system.slice or machine.slice")
    return slice_, unit


def slice_dir(slice_: str) -> str:
    """Where systemd puts a slice in the tree: each dash a level, a-b.slice inside a.slice."""
    if slice_ == "-.slice":
        return ""
    stem = slice_[:-len(".slice")]
    words = stem.split("-")
    return os.path.join(*["-".join(words[:i]) + ".slice" for i in range(1, len(words) + 1)])


def _manager():
    from jeepney import DBusAddress
    return DBusAddress("/org/freedesktop/systemd1", bus_name="org.freedesktop.systemd1",
                       interface="org.freedesktop.systemd1.Manager")


def _properties_of(path: str):
    from jeepney import DBusAddress
    return DBusAddress(path, bus_name="org.freedesktop.systemd1", interface="org.freedesktop.DBus.Properties")


def _call(method: str, signature: str, body: tuple, address=None):
    try:
        from jeepney import new_method_call
        from jeepney.io.blocking import open_dbus_connection
        from jeepney.wrappers import DBusErrorResponse, unwrap_msg
    except ImportError:
        raise LabError("--systemd-cgroup needs the jeepney package", "it speaks D-Bus to systemd",
                       "pip install jeepney (the lab's install has it)") from None
    try:
        with open_dbus_connection(bus="SYSTEM") as connection:
            reply = connection.send_and_get_reply(new_method_call(address or _manager(), method, signature, body),
                                                  timeout=10)
            return unwrap_msg(reply)
    except DBusErrorResponse as e:
        raise LabError(f"systemd refused {method}: {e.name}: {' '.join(map(str, e.data))}", "the unit exists "
                       "already, or its name or properties are wrong", "see `systemctl status` of the unit") from None
    except (OSError, TimeoutError) as e:
        raise LabError(f"cannot reach systemd over D-Bus: {e}", "the system bus is down or refuses us",
                       "systemctl status dbus; run as root") from None


def start_scope(unit: str, slice_: str, pid: int, cgroup_dir: str, timeout: float = 10.0) -> None:
    """StartTransientUnit: a scope holding `pid`, delegated to us; return once its cgroup exists."""
    properties = [("Description", ("s", f"minicontainer container {unit}")), ("Slice", ("s", slice_)),
                  ("Delegate", ("b", True)), ("PIDs", ("au", [pid])), ("DefaultDependencies", ("b", False)),
                  ("MemoryAccounting", ("b", True)), ("CPUAccounting", ("b", True)),
                  ("TasksAccounting", ("b", True))]
    _call("StartTransientUnit", "ssa(sv)a(sa(sv))", (unit, "fail", properties, []))
    # The job runs after the reply. Until the unit is active systemd may still write its own settings into
    # the scope's cgroup files, over anything written there first.
    path = _call("GetUnit", "s", (unit,))[0]
    deadline = time.monotonic() + timeout
    while _call("Get", "ss", ("org.freedesktop.systemd1.Unit", "ActiveState"), _properties_of(path))[0][1] != "active" \
            or not os.path.isdir(cgroup_dir):
        if time.monotonic() > deadline:
            raise LabError(f"systemd did not start {unit} (its cgroup {cgroup_dir}) within {timeout:.0f} s",
                           "its start job failed or is queued behind others", f"systemctl status {unit}")
        time.sleep(0.01)


def set_limits(unit: str, memory: int | None, swap: bool, cpus: float | None, pids: int | None) -> None:
    """The limits as the scope's own properties too (SetUnitProperties, for this boot), as runc sets them:
    whenever systemd applies the unit again (a daemon-reload) it writes its properties into the cgroup's
    files, and what it does not know would go back to its defaults."""
    properties = []
    if memory is not None:
        properties += [("MemoryMax", ("t", memory))] + ([("MemorySwapMax", ("t", 0))] if swap is False else [])
    if cpus is not None:
        properties.append(("CPUQuotaPerSecUSec", ("t", int(cpus * 1_000_000))))
    if pids is not None:
        properties.append(("TasksMax", ("t", pids)))
    if properties:
        _call("SetUnitProperties", "sba(sv)", (unit, True, properties))


def stop_scope(unit: str) -> None:
    """StopUnit: systemd kills what is left in the scope and removes its cgroup. A unit already gone is fine."""
    try:
        _call("StopUnit", "ss", (unit, "replace"))
    except LabError as e:
        if "NoSuchUnit" not in str(e):
            raise
