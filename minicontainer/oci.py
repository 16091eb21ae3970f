"""The OCI view: a ContainerSpec as an OCI runtime config.json, and an OCI bundle as a ContainerSpec.

runc, crun and youki read the same file (config.json beside a rootfs/ directory), so a learner
can hold minicontainer's choices next to theirs. Only the subset minicontainer implements is
accepted; fields it cannot reproduce are refused with the list of what is unsupported. Where a bundle
is silent it adds its own choices, and says so here rather than in silence: its own mount options for
/proc, /dev and /sys, its seccomp allow-list and a size-limited /tmp when the bundle asks for neither, an
empty ambient set, and no /sys/fs/cgroup on v1 or hybrid hosts. Like runc, it brings lo up in a new network
namespace.
Notebook 06 shows the differences against runc running the same bundle.
"""

from __future__ import annotations

import json
import os

from . import devices, namespaces
from .errors import LabError
from .hooks import KINDS as HOOK_KINDS
from .process import mcinit
from .security import APPARMOR_ENABLED, MASKED_PATHS, READ_ONLY_PATHS, Security, apparmor_enabled
from .spec import JOINABLE, ContainerSpec

# OCI namespace type <-> /proc/PID/ns name
NS_TYPES = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "mount": "mnt", "user": "user",
            "cgroup": "cgroup", "time": "time"}
# Mounts the runtime makes itself (destination -> type); the config may list them or not.
KNOWN_MOUNTS = {"/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/dev/shm": "tmpfs", "/sys": "sysfs",
                "/dev/mqueue": "mqueue", "/sys/fs/cgroup": "cgroup", "/tmp": "tmpfs"}
EXTRA_MOUNTS = {"/dev/mqueue": "mqueue", "/sys/fs/cgroup": "cgroup"}  # made only when asked for
SUPPORTED = {
    "ociVersion", "process", "process.terminal", "process.user", "process.user.uid", "process.user.gid",
    "process.args", "process.env", "process.cwd", "process.capabilities", "process.rlimits",
    # minicontainer sets effective and permitted to the bounding list and empties inheritable and
    # ambient; unsupported() refuses the sets where that would differ from what the config asks
    "process.capabilities.bounding", "process.capabilities.effective", "process.capabilities.permitted",
    "process.capabilities.ambient", "process.capabilities.inheritable",
    "process.noNewPrivileges", "process.apparmorProfile", "root", "root.path", "root.readonly", "hostname",
    "mounts", "linux",
    "linux.namespaces", "linux.resources", "linux.resources.memory", "linux.resources.memory.limit",
    "linux.resources.memory.swap", "linux.resources.cpu", "linux.resources.cpu.quota", "linux.resources.cpu.period",
    "linux.resources.pids", "linux.resources.cpu.shares",
    "linux.resources.pids.limit", "linux.resources.devices", "linux.maskedPaths", "linux.readonlyPaths",
    "annotations", "hooks", "linux.cgroupsPath", "linux.seccomp", "linux.sysctl", "process.user.umask",
    "process.oomScoreAdj", "process.user.additionalGids", "linux.resources.memory.disableOOMKiller",
    "linux.resources.blockIO", "linux.resources.blockIO.weight",  # only 0, Docker's "unset" (refused below)
    "linux.uidMappings", "linux.gidMappings", "linux.rootfsPropagation",  # checked in unsupported()
}
# Their keys are data, checked on their own.
LEAVES = ("annotations", "linux.sysctl", "linux.seccomp", "hooks", "linux.uidMappings", "linux.gidMappings")


def _keys(tree: dict, prefix: str = "") -> list[str]:
    """Every key path in the config, e.g. process.user.uid (lists are leaves)."""
    paths = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        paths.append(path)
        if isinstance(value, dict) and path not in LEAVES:
            paths += _keys(value, path + ".")
    return paths


def unsupported(config: dict) -> list[str]:
    """What in this config minicontainer cannot do, one entry per field or value."""
    problems = [k for k in _keys(config) if k not in SUPPORTED]
    linux = config.get("linux", {})
    for ns in linux.get("namespaces", []):
        if ns.get("type") not in NS_TYPES:
            problems.append(f"linux.namespaces type {ns.get('type')!r}")
        if "path" in ns and NS_TYPES.get(ns.get("type")) not in JOINABLE:
            problems.append(f"linux.namespaces {ns['type']} path (only {', '.join(JOINABLE)} can be joined)")
    problems += _mapping_problems(linux)
    if linux.get("rootfsPropagation", "rprivate") not in ("private", "rprivate"):
        problems.append(f"linux.rootfsPropagation {linux['rootfsPropagation']!r} (every mount in the container is "
                        "private: nothing propagates to or from the host)")
    if config.get("hooks"):
        from .hooks import check
        problems += check(config["hooks"])
    if linux.get("seccomp"):
        from .seccomp import oci_profile_problems
        problems += oci_profile_problems(linux["seccomp"])
    rules = effective_device_rules(linux.get("resources", {}).get("devices", []))
    # Deny all first (runc adds its standard devices to that alone), then only rules that allow a
    # character or block device: what both the v1 controller and our v2 BPF program express.
    if rules and not _is_deny_all(rules[0]):
        problems.append("linux.resources.devices not starting with deny-all")
    problems += [f"linux.resources.devices rule {d}" for d in rules[1:]
                 if d.get("type") not in ("c", "b") or not set(d.get("access", "")) <= set("rwm")]
    memory = linux.get("resources", {}).get("memory", {})
    if memory.get("disableOOMKiller"):
        problems.append("linux.resources.memory.disableOOMKiller true (the OOM killer stays on)")
    if linux.get("resources", {}).get("blockIO", {}).get("weight"):
        problems.append("linux.resources.blockIO.weight")
    problems += _capability_problems(config.get("process", {}))
    if config.get("process", {}).get("apparmorProfile") and not apparmor_enabled():
        # never run the command less confined than the config asks
        problems.append(f"process.apparmorProfile (AppArmor is not enabled on this host: {APPARMOR_ENABLED})")
    for mount in config.get("mounts", []):
        destination, kind = mount.get("destination"), mount.get("type")
        if KNOWN_MOUNTS.get(destination) == kind:
            continue
        if kind == "tmpfs":
            odd = [o for o in mount.get("options", []) if o not in BIND_OPTIONS and o.split("=", 1)[0] not in
                   ("size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "tmpcopyup")]
            if odd:
                problems.append(f"mount {destination} option(s) {', '.join(odd)}")
            continue
        if kind == "bind" or "bind" in mount.get("options", []) or "rbind" in mount.get("options", []):
            odd = [o for o in mount.get("options", []) if o not in BIND_OPTIONS]
            if odd:
                problems.append(f"mount {destination} option(s) {', '.join(odd)}")
            continue
        problems.append(f"mount {destination} ({kind})")
    return problems


def _mapping_problems(linux: dict) -> list[str]:
    """A user namespace's id maps: minicontainer maps one range, the same for uids and gids; runc too needs
    maps whenever there is a user namespace."""
    uids, gids = linux.get("uidMappings"), linux.get("gidMappings")
    user = any(ns.get("type") == "user" and "path" not in ns for ns in linux.get("namespaces", []))
    if not user:
        return ["linux.uidMappings/gidMappings without a user namespace"] if uids or gids else []
    if not uids or not gids:
        return ["a user namespace without linux.uidMappings and linux.gidMappings"]
    fields = ("containerID", "hostID", "size")
    if len(uids) != 1 or len(gids) != 1 or not all(isinstance(m[0].get(k), int) for m in (uids, gids) for k in fields):
        return ["linux.uidMappings/gidMappings other than one range each"]
    from .process.steps import id_map_lines
    expected = id_map_lines(" ".join(str(uids[0][k]) for k in fields), os.geteuid(), os.getegid())[1]
    if " ".join(str(gids[0][k]) for k in fields) != expected:
        return [f"linux.gidMappings other than {expected} (as root, the uid range; unprivileged, your own gid)"]
    return []


def _uid_map(linux: dict) -> str | None:
    """The config's one id range as the spec's "inside outside count", if it has one."""
    ranges = linux.get("uidMappings")
    return f"{ranges[0]['containerID']} {ranges[0]['hostID']} {ranges[0]['size']}" if ranges else None


DENY_ALL = {"allow": False, "access": "rwm"}
# What a bind may ask for: the flags the runtime applies, and propagation (every mount in the container
# is private already: the mounts-private step) and atime choices, which change no access.
BIND_OPTIONS = ("bind", "rbind", "ro", "rw", "nosuid", "nodev", "noexec", "private", "rprivate", "slave",
                "rslave", "relatime", "norelatime", "strictatime", "noatime")


def _is_deny_all(rule: dict) -> bool:
    return not rule.get("allow") and rule.get("type", "a") == "a" and set(rule.get("access", "rwm")) == set("rwm") \
        and rule.get("major") in (None, -1) and rule.get("minor") in (None, -1)


def effective_device_rules(rules: list[dict]) -> list[dict]:
    """The rules from the last deny-all on: a deny-all empties the allow-list, so what came before it no
    longer counts (Docker 25 and later send deny-all twice, once from its defaults and once with its devices)."""
    last = max((i for i, rule in enumerate(rules) if _is_deny_all(rule)), default=0)
    return rules[last:]


def _allowed_devices(rules: list[dict]) -> list | None:
    """A config's allow rules as [type, major, minor, access] (-1 or absent: any); None where the config leaves
    the choice to the runtime (no rules, or deny-all alone: runc adds its standard devices then)."""
    if len(rules) <= 1 or rules == [DENY_ALL] + device_rules():
        return None
    number = lambda n: None if n in (None, -1) else int(n)  # noqa: E731
    # mknod of any device stays allowed, as in the runtime's own list and Docker's: the /dev step makes its
    # nodes after the rules are in place, and a node the rules do not allow cannot be opened anyway.
    return [["c", None, None, "m", True], ["b", None, None, "m", True]] + \
        [[r["type"], number(r.get("major")), number(r.get("minor")), r.get("access", "rwm"), bool(r.get("allow"))]
         for r in rules[1:]]


def device_rules() -> list[dict]:
    """devices.ALLOWED as OCI linux.resources.devices entries (a missing major or minor means any)."""
    rules = []
    for rule in devices.ALLOWED:
        entry = {"allow": True, "type": rule.type}
        entry.update({k: v for k, v in (("major", rule.major), ("minor", rule.minor)) if v is not None})
        rules.append({**entry, "access": rule.access})
    return rules


def _capability_problems(process: dict) -> list[str]:
    """The sets minicontainer cannot reproduce. It gives root the bounding list as effective and permitted,
    an empty inheritable set, and no ambient capabilities (which a root process gains nothing from: its
    execve grants it the bounding set); a non-root user gets none."""
    caps = process.get("capabilities", {})
    bounding = set(caps.get("bounding", []))
    root = process.get("user", {}).get("uid", 0) == 0
    problems = []
    for name in ("effective", "permitted", "inheritable", "ambient"):
        wanted = set(caps.get(name, []))
        if not root:
            if wanted:
                problems.append(f"process.capabilities.{name} for a non-root user (minicontainer gives it none)")
        elif name in ("effective", "permitted") and name in caps and wanted != bounding:
            problems.append(f"process.capabilities.{name} other than the bounding set "
                            f"(minicontainer makes them equal): {sorted(wanted ^ bounding)}")
        elif name == "inheritable" and wanted:
            problems.append("process.capabilities.inheritable (minicontainer empties it)")
        elif name == "ambient" and not wanted <= bounding:
            problems.append(f"process.capabilities.ambient beyond the bounding set: {sorted(wanted - bounding)}")
    return problems


def _seccomp_annotation(annotations: dict) -> str | None:
    """Our own export says which seccomp profile it had; a foreign bundle gets the default."""
    profile = annotations.get("org.minicontainer.seccomp", "allowlist")
    return None if profile == "off" else profile


def load_bundle(bundle: str, command: list[str] | None = None) -> ContainerSpec:
    """A ContainerSpec from an OCI bundle directory (config.json + its root.path)."""
    path = os.path.join(bundle, "config.json")
    try:
        with open(path) as f:
            config = json.load(f)
    except FileNotFoundError:
        raise LabError(f"{path} does not exist", "an OCI bundle is a directory with config.json and a rootfs",
                       "make one with `runc spec` in the bundle directory, or with "
                       "`minicontainer run --print-oci`") from None
    except json.JSONDecodeError as e:
        raise LabError(f"{path} is not valid JSON: {e}", "the file was edited by hand", "fix the JSON") from None
    kinds = [ns.get("type") for ns in config.get("linux", {}).get("namespaces", [])]
    twice = sorted({kind for kind in kinds if kinds.count(kind) > 1}, key=str)
    if twice:
        raise LabError(f"{path} lists the {', '.join(map(str, twice))} namespace more than once",
                       "a container is in one namespace of each kind, made or joined: the config is malformed "
                       "(runc refuses it too)", "keep one entry per namespace type in linux.namespaces")
    problems = unsupported(config)
    if problems:
        raise LabError("the bundle asks for what minicontainer does not support: " + "; ".join(problems),
                       "minicontainer implements a subset of the OCI runtime spec",
                       "remove those fields, or run the bundle with runc or crun")
    return from_config(config, bundle, command)


def from_config(config: dict, bundle: str, command: list[str] | None = None) -> ContainerSpec:
    process, linux = config.get("process", {}), config.get("linux", {})
    resources = linux.get("resources", {})
    annotations = config.get("annotations", {})
    ours = "org.minicontainer.seccomp" in annotations  # our own export, not a foreign bundle
    mounts = config.get("mounts", [])
    args = process.get("args")
    init = annotations.get("org.minicontainer.init") == "true"
    if init:  # the init step binds the init and puts it in front again
        mounts = [m for m in mounts if m.get("destination") != mcinit.TARGET]
        if args and args[:2] == [mcinit.TARGET, "--"]:
            args = args[2:]
    root = config.get("root", {})
    rootfs = os.path.join(bundle, root.get("path", "rootfs"))
    caps = process.get("capabilities", {}).get("bounding", [])  # no list: none, as runc gives
    user = process.get("user", {})
    cpu = resources.get("cpu", {})
    destinations = {m.get("destination") for m in mounts}
    binds = [(os.path.join(bundle, m["source"]) if not m["source"].startswith("/") else m["source"],
              m["destination"], "ro" in m.get("options", []))
             for m in mounts if m.get("type") == "bind" or "rbind" in m.get("options", [])]
    kinds = tuple(NS_TYPES[ns["type"]] for ns in linux.get("namespaces", []) if "path" not in ns)
    joined = {NS_TYPES[ns["type"]]: ns["path"] for ns in linux.get("namespaces", []) if "path" in ns}
    # runc and crun bring lo up in a new network namespace (engines count on localhost with --network none);
    # our own export keeps the lab's choice, where lo starts down.
    network = annotations.get("org.minicontainer.network", "none") if ours else "loopback"
    if "net" not in kinds or network not in ("none", "loopback"):
        network = "none"
    bind_options = {m["destination"]: [o for o in m.get("options", []) if o in ("nosuid", "nodev", "noexec")]
                    for m in mounts if m.get("type") == "bind" or "rbind" in m.get("options", [])}
    return ContainerSpec(
        rootfs=rootfs,
        command=command or args or ["/bin/sh"],
        env=dict(e.split("=", 1) for e in process.get("env", [])),
        cwd=process.get("cwd", "/"),
        hostname=config.get("hostname") if "uts" in kinds else None,
        namespaces=kinds,
        network=network,
        uid_map=_uid_map(linux) or ContainerSpec.uid_map,
        memory=resources.get("memory", {}).get("limit"),
        cpus=cpu["quota"] / cpu.get("period", 100000) if cpu.get("quota") else None,
        pids=resources.get("pids", {}).get("limit"),
        user=f"{user.get('uid', 0)}:{user.get('gid', 0)}" if user.get("uid", 0) else None,
        binds=binds,
        read_only_root=bool(root.get("readonly")),
        rlimits={r["type"]: (r["soft"], r["hard"]) for r in process.get("rlimits", [])},
        extra_mounts=tuple(kind for destination, kind in EXTRA_MOUNTS.items() if destination in destinations),
        security=Security(capabilities=[c.lower().removeprefix("cap_") for c in caps],
                          no_new_privs=bool(process.get("noNewPrivileges")),
                          masked_paths=bool(linux.get("maskedPaths") or linux.get("readonlyPaths")),
                          seccomp=None if linux.get("seccomp") else _seccomp_annotation(annotations),
                          oci_seccomp=linux.get("seccomp") or None,
                          new_namespaces=ours and annotations.get("org.minicontainer.seccomp.namespaces") == "allowed",
                          # A foreign bundle without device rules still gets the device cgroup; our
                          # own export has none only when it was switched off.
                          devices=bool(resources.get("devices")) or not ours,
                          apparmor_profile=process.get("apparmorProfile", "")),
        init=init,
        swap=_swap(resources.get("memory", {})),
        cpu_shares=cpu.get("shares") or None,  # 0 is Docker's "not set", as runc reads it
        device_rules=_allowed_devices(effective_device_rules(resources.get("devices", []))),
        join=joined,
        cgroup_path=linux.get("cgroupsPath") or None,
        sysctl=dict(linux.get("sysctl", {})),
        umask=user.get("umask"),
        groups=[int(g) for g in user["additionalGids"]] if "additionalGids" in user else None,
        masked=list(linux["maskedPaths"]) if "maskedPaths" in linux else None,
        read_only_paths=list(linux["readonlyPaths"]) if "readonlyPaths" in linux else None,
        oom_score_adj=process.get("oomScoreAdj"),
        bind_options={target: options for target, options in bind_options.items() if options},
        hooks={kind: list(entries) for kind, entries in config.get("hooks", {}).items() if entries},
        tmpfs={m["destination"]: list(m.get("options", [])) for m in mounts
               if m.get("type") == "tmpfs" and KNOWN_MOUNTS.get(m.get("destination")) != "tmpfs"},
    )


def _swap(memory: dict) -> bool | int:
    """OCI's memory.swap is memory and swap together: equal to the limit (or absent) means no swap, -1 no
    limit on swap, more than the limit that much in all."""
    total, limit = memory.get("swap"), memory.get("limit")
    if total is None or total == limit:
        return False
    return True if total == -1 else int(total)


def to_config(spec: ContainerSpec) -> dict:
    """The spec as an OCI runtime config.json (what runc or crun would need to build the same container)."""
    caps = None if spec.security.capabilities is None else [f"CAP_{c.upper()}" for c in spec.security.capabilities]
    uid, _, gid = (spec.user or "0").partition(":")
    mounts = [{"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
              {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
              {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]},
              {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "nodev", "mode=1777"] + ([f"size={spec.security.tmpfs_size}"]
                                                             if spec.security.tmpfs_size else [])},
              {"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}]
    if spec.security.tmpfs_size:
        mounts.append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                       "options": ["nosuid", "nodev", "mode=1777", f"size={spec.security.tmpfs_size}"]})
    mounts += [{"destination": target, "type": "bind", "source": source, "options": ["rbind"] + (["ro"] if ro else [])}
               for source, target, ro in spec.binds]
    args = spec.command
    if spec.init:  # as docker run --init hands runc its init: bound in, and in front of the command
        mounts.append({"destination": mcinit.TARGET, "type": "bind", "source": mcinit.binary(),
                       "options": ["rbind", "ro"]})
        args = [mcinit.TARGET, "--", *spec.command]
    resources = {}
    if spec.memory:
        resources["memory"] = {"limit": spec.memory}
    if spec.cpus:
        resources["cpu"] = {"quota": int(spec.cpus * 100000), "period": 100000}
    if spec.pids:
        resources["pids"] = {"limit": spec.pids}
    config = {
        "ociVersion": "1.0.2",
        "process": {"terminal": spec.tty, "user": {"uid": int(uid), "gid": int(gid or uid)},
                    "args": args, "env": [f"{k}={v}" for k, v in spec.env.items()], "cwd": spec.cwd,
                    "noNewPrivileges": spec.security.no_new_privs,
                    "rlimits": [{"type": k, "soft": s, "hard": h} for k, (s, h) in spec.rlimits.items()]},
        "root": {"path": spec.rootfs or "/", "readonly": spec.read_only_root},
        "mounts": mounts,
        "linux": {"namespaces": [{"type": t} for t, name in NS_TYPES.items() if name in spec.namespaces],
                  "resources": resources},
        "annotations": {"org.minicontainer.seccomp": spec.security.seccomp or "off",
                        "org.minicontainer.seccomp.namespaces":
                            "refused" if spec.security.seccomp and spec.security.refuses_namespaces else "allowed",
                        "org.minicontainer.network": spec.network,
                        "org.minicontainer.init": "true" if spec.init else "false"},
    }
    if "user" in spec.namespaces:
        from .process.steps import id_map_lines
        for key, line in zip(("uidMappings", "gidMappings"), id_map_lines(spec.uid_map, os.geteuid(), os.getegid()),
                             strict=True):
            inside, outside, count = (int(n) for n in line.split())
            config["linux"][key] = [{"containerID": inside, "hostID": outside, "size": count}]
    if spec.hostname:
        config["hostname"] = spec.hostname
    if spec.security.apparmor_profile:
        config["process"]["apparmorProfile"] = spec.security.apparmor_profile
    if caps is not None:
        root_caps = caps if uid == "0" else []
        config["process"]["capabilities"] = {"bounding": caps, "effective": root_caps, "permitted": root_caps,
                                             "inheritable": [], "ambient": []}
    if spec.security.devices:
        resources["devices"] = [DENY_ALL] + device_rules()
    if spec.security.masked_paths:
        config["linux"]["maskedPaths"], config["linux"]["readonlyPaths"] = MASKED_PATHS, READ_ONLY_PATHS
    namespaces.check_kinds(spec.namespaces)
    return config


def features() -> dict:
    """What `minicontainer features` answers (the runtime spec's features.md): only what is implemented."""
    from .kernel import CAPABILITIES
    from .seccomp import OCI_ACTIONS, OCI_ARCHES, OCI_OPERATORS
    return {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.0.2",
        "hooks": list(HOOK_KINDS),
        "mountOptions": sorted(set(BIND_OPTIONS) | {"tmpcopyup"}),
        "linux": {
            "namespaces": sorted(NS_TYPES),
            "capabilities": [f"CAP_{name.upper()}" for name in CAPABILITIES],
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False, "rdma": False},
            "seccomp": {"enabled": True, "actions": sorted(OCI_ACTIONS), "operators": sorted(OCI_OPERATORS),
                        "archs": sorted(OCI_ARCHES)},
            "apparmor": {"enabled": True},
            "selinux": {"enabled": False},
        },
        "annotations": {"org.minicontainer.seccomp": "allowlist|denylist|off: the runtime's own filter"},
    }
