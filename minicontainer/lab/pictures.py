"""Pictures of what the kernel holds, drawn as SVG from live kernel state.

Each function reads the kernel (/proc/PID/mountinfo, the network namespace through `nsenter ... ip -j`,
the firewall ruleset, cgroupfs samples from lab/samples.py) and returns a Picture: Jupyter shows it,
`.svg` is the text, `.facts` what was read (so a check can compare it with the kernel's own answer).
Nothing is drawn from what the runtime meant to do: a picture of a container whose mechanism is
switched off shows that.

    overlay_layers(pid, file="/etc/motd")     the overlay root: upper, lowers, work; where a file comes from
    peer_groups([host_pid, box.pid])          mounts and their propagation; peers linked across namespaces
    packet_path(pid)                          eth0 -> veth peer -> bridge -> NAT rule -> host's uplink
    cpu_throttling(sample_cpu(box, 3))        CPU used per interval against the quota; time throttled
    memory_over_time(sample_memory(box, 3))   memory in use against the limit; the OOM kill marked
"""

from __future__ import annotations

import html
import ipaddress
import json
import math
import os
import re
import shutil
import stat
import subprocess

from .. import inspect
from ..errors import LabError
from .samples import Samples, sample_cpu, sample_memory

__all__ = ["Picture", "overlay_layers", "peer_groups", "mount_propagation", "packet_path", "cpu_throttling",
           "memory_over_time", "sample_cpu", "sample_memory"]

WIDTH = 760  # about a notebook's output width at 100 % zoom
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"
MONO = "DejaVu Sans Mono, Menlo, Consolas, monospace"
PALETTE = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
WARN = "#d62728"
MARK = "#ff7f0e"


class Picture:
    """An SVG drawing, shown by Jupyter; `.svg` the text, `.facts` the kernel state it was drawn from."""

    def __init__(self, svg: str, title: str, facts: dict):
        self.svg, self.title, self.facts = svg, title, facts

    def _repr_svg_(self) -> str:
        return self.svg

    def _repr_html_(self) -> str:
        return f'<div style="max-width:100%;overflow-x:auto">{self.svg}</div>'

    def __repr__(self) -> str:
        return f"<Picture: {self.title}>"


class _Canvas:
    """A few SVG shapes; text is escaped here, once."""

    def __init__(self, width: int = WIDTH):
        self.width, self.items = width, []

    def rect(self, x, y, w, h, fill="#fff", stroke="#666", width=1.2, dash=False, rx=5):
        dashes = ' stroke-dasharray="6 4"' if dash else ""
        self.items.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" rx="{rx}" '
                          f'fill="{fill}" stroke="{stroke}" stroke-width="{width}"{dashes}/>')

    def text(self, x, y, words, size=12, anchor="start", weight="normal", fill="#222", mono=False, rotate=None):
        turn = f' transform="rotate({rotate} {x:.1f} {y:.1f})"' if rotate is not None else ""
        self.items.append(f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
                          f'font-weight="{weight}" fill="{fill}" font-family="{MONO if mono else FONT}"{turn}>'
                          f'{html.escape(str(words))}</text>')

    def line(self, x1, y1, x2, y2, stroke="#666", width=1.2, dash=False, arrow=False):
        dashes = ' stroke-dasharray="6 4"' if dash else ""
        head = ' marker-end="url(#mc-arrow)"' if arrow else ""
        self.items.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{stroke}" '
                          f'stroke-width="{width}"{dashes}{head}/>')

    def polyline(self, points, stroke, width=2.0):
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        self.items.append(f'<polyline points="{path}" fill="none" stroke="{stroke}" stroke-width="{width}"/>')

    def circle(self, x, y, r, fill):
        self.items.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r}" fill="{fill}"/>')

    def render(self, height: float, title: str) -> str:
        return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{self.width}" height="{height:.0f}" '
                f'viewBox="0 0 {self.width} {height:.0f}" role="img" style="max-width:100%;height:auto">'
                f'<title>{html.escape(title)}</title>'
                '<defs><marker id="mc-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
                'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#666"/></marker>'
                f'</defs><rect width="100%" height="100%" fill="#fff"/>{"".join(self.items)}</svg>')


def _fit(words: str, pixels: float, size: int = 12, mono: bool = True) -> str:
    """Shorten a text to about `pixels` wide, cutting the middle (the ends of a path say most)."""
    room = max(8, int(pixels / (size * (0.61 if mono else 0.55))))
    return words if len(words) <= room else words[: room // 2 - 1] + "…" + words[-(room - room // 2):]


def _run(command: list[str], what: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        raise LabError(f"{command[0]} is not installed", f"it is needed to read {what}",
                       "apt-get install iproute2 util-linux") from None
    except subprocess.TimeoutExpired:
        raise LabError(f"{' '.join(command[:4])} did not answer in 10 s", f"reading {what}", "try again") from None
    if done.returncode != 0:
        raise LabError(f"cannot read {what}: {done.stderr.strip()[-200:] or 'exit ' + str(done.returncode)}",
                       "the process has exited, or this needs root", "check that the container still runs")
    return done.stdout


def _pid(pid) -> int:
    if isinstance(pid, bool) or not isinstance(pid, int) and not str(pid).isdigit():
        raise LabError(f"{pid!r} is not a process ID", "pictures read /proc/PID/...",
                       "pass a PID such as box.pid or stage.pid")
    pid = int(pid)
    if not os.path.isdir(f"/proc/{pid}"):
        raise LabError(f"process {pid} does not exist", "it has exited (a container ends with its PID 1)",
                       "start the container again and pass its .pid")
    return pid


# -- 1. the overlay root ------------------------------------------------------------------------

def _unescape(text: str) -> str:
    """mountinfo and seq_show_option write space, tab, newline, comma, = and backslash as \\ooo."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), text)


def overlay_options(super_options: str) -> dict:
    """lowerdir (a list, topmost first), upperdir, workdir from an overlay mount's super options."""
    found = {"lowerdir": []}
    for option in super_options.split(","):
        key, _, value = option.partition("=")
        value = _unescape(value)
        if key == "lowerdir":  # "a:b:c", ":" inside a path written as "\:"
            found["lowerdir"] += [part.replace("\\:", ":") for part in re.split(r"(?<!\\):", value) if part]
        elif key in ("lowerdir+", "datadir+"):  # Linux 6.7+: one layer per option
            found["lowerdir"].append(value)
        elif key in ("upperdir", "workdir"):
            found[key] = value
    return found


def _layer_of(path: str, upper: str | None, lowers: list[str]) -> tuple[str | None, int | None]:
    """Which layer a path of the merged view comes from: ("upper"|"whiteout"|"lower", index)."""
    relative = path.lstrip("/")
    for index, layer in enumerate(([upper] if upper else []) + lowers):
        try:
            info = os.lstat(os.path.join(layer, relative))
        except (FileNotFoundError, NotADirectoryError):
            continue
        if layer == upper and stat.S_ISCHR(info.st_mode) and info.st_rdev == 0:
            return "whiteout", None  # a 0:0 character device: deleted, hides every lower copy
        return ("upper", None) if layer == upper else ("lower", index - (1 if upper else 0))
    return None, None


def _changes(upper: str, limit: int = 6) -> tuple[list[str], int]:
    """Some files in the upper dir (what the container wrote or deleted), and how many there are."""
    shown, count = [], 0
    for top, dirs, files in os.walk(upper):
        dirs.sort()
        for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            path = os.path.join(top, name)
            count += 1
            if len(shown) < limit:
                info = os.lstat(path)
                deleted = stat.S_ISCHR(info.st_mode) and info.st_rdev == 0
                shown.append(("deleted " if deleted else "") + "/" + os.path.relpath(path, upper))
        if count > 2000:
            break
    return shown, count


def overlay_layers(pid, file: str | None = None, mount_point: str | None = None) -> Picture:
    """The overlay mount at / (or `mount_point`) of process pid, from /proc/PID/mountinfo, as stacked
    layers; with `file`, the layer that file of the merged view comes from (upper first, then lowers)."""
    pid = _pid(pid)
    overlays = [m for m in inspect.mounts(pid) if m.fstype == "overlay"]
    chosen = [m for m in overlays if m.mount_point == (mount_point or "/")] or ([] if mount_point else overlays[-1:])
    if not chosen:
        where = f"at {mount_point}" if mount_point else "at all"
        raise LabError(f"process {pid} has no overlay mount {where} in /proc/{pid}/mountinfo",
                       "its root is not an overlay yet (before the 'overlay' step) or it has no rootfs",
                       "run the container past the 'overlay' step, or pass mount_point= of an overlay mount")
    mount = chosen[-1]  # the last one mounted there is the one seen
    options = overlay_options(mount.super_options)
    lowers, upper, work = options["lowerdir"], options.get("upperdir"), options.get("workdir")
    source, source_index = _layer_of(file, upper, lowers) if file else (None, None)
    changed, changed_count = _changes(upper) if upper and os.path.isdir(upper) else ([], 0)

    canvas = _Canvas()
    title = f"Overlay mount at {mount.mount_point} of PID {pid}"
    canvas.text(20, 26, title, size=15, weight="bold")
    canvas.text(20, 44, f"from /proc/{pid}/mountinfo, mount {mount.mount_id}: {mount.options.split(',')[0]}"
                f" · a file is looked up from the top layer down; the first layer that has it wins", size=11,
                fill="#555")
    x, w, y = 20, 540, 60
    layers = [("merged view", f"{mount.mount_point} as PID {pid} sees it (the union of the layers below)",
               "#e8f0fe", "#1f77b4", None)]
    if upper:
        note = (f"{changed_count} file(s) the container wrote or deleted" if changed_count
                else "empty: nothing changed yet")
        layers.append(("upperdir · read-write", upper, "#fff4e5", MARK, note))
    else:
        layers.append(("no upperdir", "read-only overlay: nothing can be written", "#f4f4f4", "#999", None))
    for index, lower in enumerate(lowers):
        label = "lowerdir · read-only" + (" · topmost lower" if index == 0 and len(lowers) > 1 else "")
        layers.append((label, lower, "#eef7ee", "#2ca02c", None))
    boxes = {}
    for index, (label, path, fill, stroke, note) in enumerate(layers):
        height = 44 + (16 * min(len(changed), 6) if label.startswith("upperdir") and changed else 0)
        kind = "upper" if label.startswith("upperdir") else "lower" if label.startswith("lowerdir") else label
        key = (kind, index - 2 if kind == "lower" else None)
        marked = file and ((source in ("upper", "whiteout") and kind == "upper") or
                           (source == "lower" and key == ("lower", source_index)))
        canvas.rect(x, y, w, height, fill=fill, stroke=MARK if marked else stroke, width=3 if marked else 1.4)
        canvas.text(x + 10, y + 17, label, size=12, weight="bold", fill=stroke)
        canvas.text(x + 10, y + 34, _fit(path, w - 20), size=12, mono=True)
        if note:
            canvas.text(x + w - 10, y + 17, note, size=11, anchor="end", fill="#555")
        if kind == "upper":
            for row, name in enumerate(changed):
                canvas.text(x + 24, y + 50 + 16 * row, _fit(name, w - 40, 11), size=11, mono=True, fill="#7a4b00")
        boxes[key] = (y, height)
        y += height + 10
    if work:
        canvas.rect(x, y, w, 40, fill="#f7f7f7", stroke="#999", dash=True)
        canvas.text(x + 10, y + 16, "workdir · overlay's own scratch space (same filesystem as upperdir)",
                    size=11, fill="#555")
        canvas.text(x + 10, y + 32, _fit(work, w - 20, 11), size=11, mono=True, fill="#555")
        y += 50
    if file:
        key = ("upper", None) if source in ("upper", "whiteout") else ("lower", source_index)
        if source is None:
            canvas.text(x + w + 14, boxes[("merged view", None)][0] + 20, f"{file}:", size=12, mono=True, fill=WARN)
            canvas.text(x + w + 14, boxes[("merged view", None)][0] + 36, "in no layer", size=12, fill=WARN)
        else:
            top, height = boxes[key]
            canvas.line(x + w + 70, top + height / 2, x + w + 4, top + height / 2, stroke=MARK, width=2, arrow=True)
            canvas.text(x + w + 14, top + height / 2 - 8, _fit(file, 180), size=12, mono=True, fill=MARK)
            canvas.text(x + w + 14, top + height / 2 + 18,
                        "deleted here (whiteout)" if source == "whiteout" else "comes from here", size=12, fill=MARK)
    layer = None if source is None else upper if source in ("upper", "whiteout") else lowers[source_index]
    facts = {"pid": pid, "mount_point": mount.mount_point, "mount_id": mount.mount_id, "lowerdir": lowers,
             "upperdir": upper, "workdir": work, "file": file, "file_layer": layer,
             "file_whiteout": source == "whiteout", "changed": changed, "changed_count": changed_count}
    return Picture(canvas.render(y + 6, title), title, facts)


# -- 2. mount propagation ------------------------------------------------------------------------

def _propagation(text: str) -> dict:
    """{"shared": N, "master": M} from mountinfo's optional fields (an empty dict: private)."""
    found = {}
    for token in text.split():
        kind, _, number = token.partition(":")
        if kind in ("shared", "master", "propagate_from") and number.isdigit():
            found[kind] = int(number)
        elif kind == "unbindable":
            found[kind] = True
    return found


def _describe_propagation(found: dict) -> str:
    parts = [f"shared:{found['shared']}"] if "shared" in found else []
    parts += [f"master:{found['master']}"] if "master" in found else []
    parts += ["unbindable"] if found.get("unbindable") else []
    return " ".join(parts) or "private"


def peer_groups(pids, mount_points=None, labels=None, limit: int = 10) -> Picture:
    """The mounts of each process's mount namespace with their propagation, read from /proc/PID/mountinfo;
    mounts in the same peer group (shared:N) are linked across the columns, and a slave (master:N) gets
    an arrow from the peer group it receives from. Same N is the same peer group: the kernel numbers them
    globally. `mount_points`: which to show (default: up to `limit` per process, propagating ones first)."""
    pids = [_pid(p) for p in ([pids] if isinstance(pids, (int, str)) else pids)]
    if not pids:
        raise LabError("no process given", "peer_groups draws the mounts of one or more processes",
                       "e.g. peer_groups([os.getpid(), box.pid])")
    labels = list(labels or [])
    columns = []
    for index, pid in enumerate(pids):
        table = inspect.mounts(pid)
        if mount_points is not None:
            wanted = [m for m in table if m.mount_point in mount_points]
        else:
            wanted = sorted(table, key=lambda m: not _propagation(m.propagation))  # stable: keeps mount order
        namespace = os.readlink(f"/proc/{pid}/ns/mnt")
        label = labels[index] if index < len(labels) else f"PID {pid}"
        columns.append({"pid": pid, "label": label, "namespace": namespace, "total": len(table),
                        "mounts": [(m.mount_point, m.fstype, _propagation(m.propagation)) for m in wanted[:limit]]})

    groups = sorted({p[key] for c in columns for _, _, p in c["mounts"] for key in ("shared", "master") if key in p})
    color = {group: PALETTE[i % len(PALETTE)] for i, group in enumerate(groups)}
    column_width = max(220, (WIDTH - 40 - 60 * (len(columns) - 1)) / len(columns))
    canvas = _Canvas(int(max(WIDTH, 40 + len(columns) * column_width + 60 * (len(columns) - 1))))
    title = "Mount propagation: " + ", ".join(c["label"] for c in columns)
    canvas.text(20, 26, title, size=15, weight="bold")
    canvas.text(20, 44, "from /proc/PID/mountinfo's optional fields: shared:N is peer group N, master:N receives "
                "from group N, no field is private", size=11, fill="#555")
    top, row_height = 92, 42
    where = {}  # (column, row) -> box geometry
    for ci, column in enumerate(columns):
        x = 20 + ci * (column_width + 60)
        canvas.text(x, 68, column["label"], size=13, weight="bold")
        canvas.text(x, 83, f"{column['namespace']} · {column['total']} mounts", size=11, mono=True, fill="#555")
        for ri, (point, fstype, prop) in enumerate(column["mounts"]):
            y = top + ri * row_height
            group = prop.get("shared", prop.get("master"))
            stroke = color.get(group, "#999")
            canvas.rect(x, y, column_width, row_height - 8, fill="#fff" if group is None else "#fafafa",
                        stroke=stroke, width=2 if group is not None else 1, dash=group is None)
            canvas.text(x + 8, y + 14, _fit(point, column_width - 16), size=12, mono=True, weight="bold")
            canvas.text(x + 8, y + 29, f"{fstype} · {_describe_propagation(prop)}", size=11,
                        fill=stroke if group is not None else "#777")
            where[(ci, ri)] = (x, y + (row_height - 8) / 2)
        hidden = column["total"] - len(column["mounts"])
        if hidden > 0:
            canvas.text(x, top + len(column["mounts"]) * row_height + 4, f"+ {hidden} more not shown", size=11,
                        fill="#777")
    links = []
    for ci in range(len(columns) - 1):
        for ri, (point_a, _, prop_a) in enumerate(columns[ci]["mounts"]):
            for rj, (point_b, _, prop_b) in enumerate(columns[ci + 1]["mounts"]):
                x1, y1 = where[(ci, ri)]
                x2, y2 = where[(ci + 1, rj)]
                if "shared" in prop_a and prop_a.get("shared") == prop_b.get("shared"):
                    kind, group, start, end = "peer", prop_a["shared"], (x1 + column_width, y1), (x2, y2)
                elif "shared" in prop_a and prop_b.get("master") == prop_a["shared"]:
                    kind, group, start, end = "master", prop_a["shared"], (x1 + column_width, y1), (x2, y2)
                elif "shared" in prop_b and prop_a.get("master") == prop_b["shared"]:
                    kind, group, start, end = "master", prop_b["shared"], (x2, y2), (x1 + column_width, y1)
                else:
                    continue
                canvas.line(*start, *end, stroke=color[group], width=2, dash=kind == "master", arrow=kind == "master")
                links.append({"kind": kind, "group": group, "from": (columns[ci]["pid"], point_a),
                              "to": (columns[ci + 1]["pid"], point_b)})
    y = top + max(len(c["mounts"]) for c in columns) * row_height + 24
    legend = [("solid line: the same peer group: a mount or unmount below one appears below the other", None),
              ("dashed arrow: a slave (master:N) receives from group N and sends nothing back", None),
              ("dashed box, no line: private: nothing propagates to or from it", None)]
    if not links:
        legend.insert(0, ("no links: none of the mounts shown propagates between these mount namespaces", WARN))
    for words, fill in legend:
        canvas.text(20, y, words, size=11, fill=fill or "#555")
        y += 16
    facts = {"mounts": {c["pid"]: [(p, _describe_propagation(prop)) for p, _, prop in c["mounts"]] for c in columns},
             "namespaces": {c["pid"]: c["namespace"] for c in columns}, "links": links}
    return Picture(canvas.render(y, title), title, facts)


def mount_propagation(pid, mount_points=None, limit: int = 10) -> Picture:
    """One process's mounts and their propagation (peer_groups for a single mount namespace)."""
    return peer_groups([pid], mount_points=mount_points, limit=limit)


# -- 3. the packet path --------------------------------------------------------------------------

def _ip(pid: int | None, *args: str) -> list:
    prefix = ["nsenter", "-t", str(pid), "-n"] if pid else []
    where = f"the network namespace of process {pid}" if pid else "the host's network"
    text = _run(prefix + ["ip", "-j", *args], where)
    return json.loads(text) if text.strip() else []


def _inet(link: dict) -> list[str]:
    return [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a.get("family") == "inet"]


def nat_rules(address: str) -> list[dict]:
    """MASQUERADE/SNAT rules whose source match covers `address`, read from nft and iptables."""
    found = []
    target = ipaddress.ip_address(address)

    def covers(prefix: str) -> bool:
        try:
            return target in ipaddress.ip_network(prefix, strict=False)
        except ValueError:
            return False
    if shutil.which("nft"):
        ruleset = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True, timeout=10).stdout
        table = chain = ""
        for line in ruleset.splitlines():
            words = line.split()
            if words[:1] == ["table"]:
                table = " ".join(words[1:3])
            elif words[:1] == ["chain"]:
                chain = words[1]
            elif ("masquerade" in words or "snat" in words) and "saddr" in words:
                prefix = words[words.index("saddr") + 1]
                if covers(prefix):
                    found.append({"tool": "nft", "where": f"table {table} chain {chain}", "rule": line.strip()})
    if shutil.which("iptables"):
        rules = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True, timeout=10).stdout
        for line in rules.splitlines():
            words = line.split()
            if "-s" in words and ("MASQUERADE" in words or "SNAT" in words) and covers(words[words.index("-s") + 1]):
                found.append({"tool": "iptables", "where": f"nat chain {words[1]}", "rule": line.strip()})
    return found  # on iptables-nft hosts one rule can show in both: the picture draws the first


def packet_path(pid, destination: str = "1.1.1.1") -> Picture:
    """The way out of process pid's network namespace, read from the kernel: its interface and route
    (`nsenter -t PID -n ip -j ...` in a subprocess), the veth peer on the host (matched by ifindex both
    ways), its bridge and the bridge's address, the NAT rule for its address, and the host's route to
    `destination` (asked of the routing table with `ip route get`: no packet is sent)."""
    pid = _pid(pid)
    try:
        ipaddress.ip_address(destination)
    except ValueError:
        raise LabError(f"destination {destination!r} is not an IP address", "the route is looked up for an address",
                       'e.g. destination="1.1.1.1"') from None
    inside = _ip(pid, "-d", "addr", "show")
    routes = _ip(pid, "route", "show")
    default = next((r for r in routes if r.get("dst") == "default"), None)
    by_name = {link["ifname"]: link for link in inside}
    eth = by_name.get(default["dev"]) if default else next(
        (link for link in inside if link["ifname"] != "lo" and _inet(link)), None)
    host_links = _ip(None, "-d", "addr", "show")
    peer = bridge = None
    if eth is not None and "link_index" in eth:
        # Both ends must name each other: an ifindex alone is only unique within one namespace.
        peer = next((link for link in host_links if link["ifindex"] == eth["link_index"]
                     and link.get("link_index") == eth["ifindex"]), None)
    if peer is not None and peer.get("master"):
        bridge = next((link for link in host_links if link["ifname"] == peer["master"]), None)
    address = _inet(eth)[0].split("/")[0] if eth is not None and _inet(eth) else None
    nat = nat_rules(address) if address else []
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        forwarding = f.read().strip() == "1"
    out_route = None
    if bridge is not None and address:
        try:  # as the kernel would route a packet arriving on the bridge from the container
            out_route = _ip(None, "route", "get", destination, "from", address, "iif", bridge["ifname"])[0]
        except (LabError, IndexError):
            out_route = None
    if out_route is None:
        try:
            out_route = _ip(None, "route", "get", destination)[0]
        except (LabError, IndexError):
            out_route = None
    out_link = next((link for link in host_links if out_route and link["ifname"] == out_route.get("dev")), None)

    canvas = _Canvas()
    title = f"From PID {pid}'s network namespace to {destination}"
    canvas.text(20, 26, title, size=15, weight="bold")
    canvas.text(20, 44, "read with ip -j (inside: nsenter -t PID -n), nft/iptables and ip route get; no packet is sent",
                size=11, fill="#555")
    steps = []
    if eth is None:
        steps.append(("container", "no interface with an address", "only lo: nothing leaves this namespace", WARN))
    else:
        kind = (eth.get("linkinfo") or {}).get("info_kind", "")
        via = f"default via {default['gateway']}" if default and default.get("gateway") else "no default route"
        steps.append((f"container: {eth['ifname']} ({kind or 'link'}, ifindex {eth['ifindex']})",
                      ", ".join(_inet(eth)) or "no IPv4 address", via, "#1f77b4" if default else WARN))
    if peer is not None:
        steps.append((f"host: {peer['ifname']} (the veth's other end, ifindex {peer['ifindex']})",
                      f"its peer is ifindex {peer.get('link_index')}: {eth['ifname']} inside",
                      f"attached to {peer.get('master') or 'no bridge'}", "#2ca02c"))
    elif eth is not None:
        steps.append(("host: no peer found", f"no interface here names {eth['ifname']} as its peer",
                      "it is not a veth, or its other end is in another namespace", WARN))
    if bridge is not None:
        steps.append((f"bridge {bridge['ifname']}", ", ".join(_inet(bridge)) or "no IPv4 address",
                      "the containers' gateway: the host routes from here", "#9467bd"))
    steps.append(("routing between interfaces", f"net.ipv4.ip_forward = {int(forwarding)}",
                  "the host forwards packets" if forwarding else "off: the host drops packets it would forward",
                  "#8c564b" if forwarding else WARN))
    if nat:
        steps.append((f"NAT ({nat[0]['tool']}, {nat[0]['where']})", nat[0]["rule"],
                      "rewrites the source address to the outgoing interface's", "#e377c2"))
    else:
        steps.append(("NAT", f"no NAT rule found for {address or 'the container'}",
                      "replies could not find their way back to a private address", WARN))
    if out_route:
        via = f"via {out_route['gateway']}" if out_route.get("gateway") else "directly connected"
        steps.append((f"host's way out: {out_route.get('dev')}",
                      ", ".join(_inet(out_link)) if out_link else "", f"to {destination} {via}", "#17becf"))
    else:
        steps.append(("host's way out", f"no route to {destination}", "the host has no default route", WARN))

    x, w, y, height = 20, WIDTH - 40, 76, 52
    for index, (head, detail, note, stroke) in enumerate(steps):
        if index == 1:
            canvas.rect(x - 8, 56, w + 16, y - 60, fill="none", stroke="#1f77b4", dash=True)
            canvas.text(x, 69, f"the network namespace of PID {pid} ({os.readlink(f'/proc/{pid}/ns/net')})",
                        size=11, fill="#1f77b4")
            canvas.text(x, y + 10, "below: this Python process's network namespace (the host's, when run on the host)",
                        size=11, fill="#555")
            y += 18
        canvas.rect(x, y, w, height, fill="#fcfcfc", stroke=stroke, width=1.6)
        canvas.text(x + 10, y + 17, head, size=12, weight="bold", fill=stroke)
        canvas.text(x + 10, y + 33, _fit(detail, w - 20), size=12, mono=True)
        canvas.text(x + 10, y + 47, note, size=11, fill="#555")
        y += height
        if index < len(steps) - 1:
            canvas.line(x + 40, y + 2, x + 40, y + 16, width=1.6, arrow=True)
        y += 18
    canvas.text(x + 10, y + 4, f"→ {destination}", size=13, weight="bold")
    facts = {"pid": pid, "interface": eth and eth["ifname"], "ifindex": eth and eth["ifindex"],
             "addresses": _inet(eth) if eth else [], "gateway": default and default.get("gateway"),
             "host_peer": peer and peer["ifname"], "host_peer_ifindex": peer and peer["ifindex"],
             "bridge": bridge and bridge["ifname"], "bridge_addresses": _inet(bridge) if bridge else [],
             "ip_forward": forwarding, "nat": nat, "out_route": out_route}
    return Picture(canvas.render(y + 16, title), title, facts)


# -- 4, 5. plots over time -------------------------------------------------------------------------

def _ticks(top: float, count: int = 5) -> list[float]:
    """Round tick values from 0 to at least top (steps of 1, 2 or 5 times a power of ten)."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [i * step for i in range(int(math.ceil(top / step - 1e-9)) + 1)]


def _tick_label(value: float) -> str:
    return f"{value:g}" if abs(value) >= 0.01 or value == 0 else f"{value:.3f}"


class _Plot:
    """Axes: x in seconds, y in a named unit, the area at (x, y, w, h) of a canvas."""

    def __init__(self, canvas, x, y, w, h, x_max, y_max, x_label, y_label):
        self.canvas, self.x, self.y, self.w, self.h = canvas, x, y, w, h
        self.y_ticks = _ticks(y_max, 4)
        self.x_max, self.y_max = max(x_max, 1e-3), self.y_ticks[-1]
        self.x_ticks = [t for t in _ticks(self.x_max, 6) if t <= self.x_max * 1.0001]  # the axis ends with the data
        canvas.rect(x, y, w, h, fill="#fff", stroke="#999", width=1, rx=0)
        for value in self.y_ticks:
            py = self.py(value)
            canvas.line(x, py, x + w, py, stroke="#eee", width=1)
            canvas.text(x - 6, py + 4, _tick_label(value), size=11, anchor="end", fill="#555")
        for value in self.x_ticks:
            canvas.text(self.px(value), y + h + 15, _tick_label(value), size=11, anchor="middle", fill="#555")
        canvas.text(x + w / 2, y + h + 32, x_label, size=12, anchor="middle")
        canvas.text(x - 44, y + h / 2, y_label, size=12, anchor="middle", rotate=-90)

    def px(self, value):
        return self.x + self.w * value / self.x_max

    def py(self, value):
        return self.y + self.h - self.h * min(value, self.y_max) / self.y_max


def _samples(samples, kind: str) -> Samples:
    if not isinstance(samples, Samples) or samples.kind != kind:
        sampler = "sample_cpu" if kind == "cpu" else "sample_memory"
        raise LabError(f"expected the result of {sampler}, got {type(samples).__name__}",
                       f"the picture plots what {sampler} read", f"e.g. picture({sampler}(box, seconds=3))")
    if len(samples.rows) < 2:
        raise LabError(f"only {len(samples.rows)} sample(s): a plot over time needs two or more",
                       samples.stopped or "sampling was too short", "sample for longer, or start the container again")
    return samples


def cpu_throttling(samples: Samples) -> Picture:
    """CPU used per interval (CPUs: CPU-seconds per second) against the quota, and the time the
    cgroup spent throttled in each interval, from sample_cpu's cpu.stat (and cpuacct.usage) readings."""
    samples = _samples(samples, "cpu")
    rows = samples.rows
    intervals = []
    for before, after in zip(rows, rows[1:], strict=False):
        dt = after["t"] - before["t"]
        if dt <= 0:
            continue
        used = None
        if after["usage_usec"] is not None and before["usage_usec"] is not None:
            used = (after["usage_usec"] - before["usage_usec"]) / 1e6 / dt
        intervals.append({"t": after["t"], "dt": dt, "cpus": used, "periods": after["periods"] - before["periods"],
                          "throttled": after["throttled"] - before["throttled"],
                          "throttled_ms": (after["throttled_usec"] - before["throttled_usec"]) / 1000})
    periods = rows[-1]["periods"] - rows[0]["periods"]
    throttled = rows[-1]["throttled"] - rows[0]["throttled"]
    throttled_ms = (rows[-1]["throttled_usec"] - rows[0]["throttled_usec"]) / 1000
    limit_text = (f"quota {samples.limit:g} CPU" if samples.limit is not None else "no quota")
    source = "cpu.max" if samples.version == 2 else "cpu.cfs_quota_us / cpu.cfs_period_us"

    canvas = _Canvas()
    title = f"CPU use and throttling (cgroup v{samples.version}, {limit_text})"
    canvas.text(20, 24, title, size=15, weight="bold")
    canvas.text(20, 42, f"in {periods} periods, {throttled} throttled ({throttled_ms:.0f} ms waiting), "
                f"from {os.path.basename(samples.files['throttled'].split()[0])}"
                + (f" · stopped early: {samples.stopped}" if samples.stopped else ""), size=11, fill="#555")
    x_max = rows[-1]["t"]
    used_max = max([i["cpus"] for i in intervals if i["cpus"] is not None] + [samples.limit or 0, 0.1])
    top = _Plot(canvas, 80, 60, WIDTH - 110, 150, x_max, used_max * 1.15, "time (s)", "CPU used (CPUs)")
    points = [(top.px(i["t"]), top.py(i["cpus"])) for i in intervals if i["cpus"] is not None]
    if points:
        canvas.polyline([(top.px(rows[0]["t"]), points[0][1])] + points, "#1f77b4")
        canvas.text(top.x + 8, top.y + 16, "CPU used per interval", size=11, fill="#1f77b4")
    else:
        canvas.text(top.x + 8, top.y + 16, "no usage counter (no cpuacct.usage): pass the Container or Cgroup",
                    size=11, fill=WARN)
    if samples.limit is not None:
        quota_y = top.py(samples.limit)
        canvas.line(top.x, quota_y, top.x + top.w, quota_y, stroke=WARN, width=1.6, dash=True)
        canvas.line(top.x + top.w - 330, top.y + 12, top.x + top.w - 300, top.y + 12, stroke=WARN, width=1.6, dash=True)
        canvas.text(top.x + top.w - 294, top.y + 16, f"quota: {samples.limit:g} CPU ({source})", size=11, fill=WARN)
    else:
        canvas.text(top.x + top.w - 6, top.y + 16, f"no quota ({source}: no limit)", size=11, anchor="end", fill="#555")
    ms_max = max([i["throttled_ms"] for i in intervals] + [1.0])
    bottom = _Plot(canvas, 80, 260, WIDTH - 110, 110, x_max, ms_max * 1.15, "time (s)", "throttled (ms)")
    for interval in intervals:
        if interval["throttled_ms"] > 0:
            left = bottom.px(interval["t"] - interval["dt"])
            bar_top = bottom.py(interval["throttled_ms"])
            canvas.rect(left + 1, bar_top, max(1.0, bottom.px(interval["t"]) - left - 2),
                        bottom.y + bottom.h - bar_top, fill=MARK, stroke=MARK, width=0.5, rx=0)
    canvas.text(bottom.x + 8, bottom.y + 16, "time spent throttled in each interval (runnable, but out of quota)"
                if throttled else "never throttled", size=11, fill=MARK if throttled else "#555")
    facts = {"version": samples.version, "limit": samples.limit, "periods": periods, "throttled": throttled,
             "throttled_ms": throttled_ms, "intervals": intervals, "stopped": samples.stopped}
    return Picture(canvas.render(412, title), title, facts)


def memory_over_time(samples: Samples) -> Picture:
    """Memory in use against the limit over time, from sample_memory; an OOM kill marked where the
    kernel's oom_kill counter rose (memory.events, or memory.oom_control on v1)."""
    samples = _samples(samples, "memory")
    rows = [r for r in samples.rows if r.get("bytes") is not None]
    if len(rows) < 2:
        raise LabError("fewer than two memory readings", samples.stopped or "sampling was too short",
                       "sample for longer, or start the container again")
    mib = 1 << 20
    kills = []
    for before, after in zip(samples.rows, samples.rows[1:], strict=False):
        if after["oom_kills"] > before["oom_kills"]:
            kills.append({"t": after["t"], "from": before["oom_kills"], "to": after["oom_kills"]})
    names = [os.path.basename(samples.files[k]) for k in ("usage", "limit", "oom_kill")]
    limit_text = f"limit {samples.limit / mib:g} MiB" if samples.limit is not None else "no limit"
    canvas = _Canvas()
    title = f"Memory of the cgroup over time (cgroup v{samples.version}, {limit_text})"
    canvas.text(20, 24, title, size=15, weight="bold")
    canvas.text(20, 42, f"{names[0]} every sample, against {names[1]}; OOM kills from {names[2]} oom_kill"
                + (f" · stopped early: {samples.stopped}" if samples.stopped else ""), size=11, fill="#555")
    peak = max(r["bytes"] for r in rows)
    plot = _Plot(canvas, 80, 60, WIDTH - 110, 220, rows[-1]["t"], max(peak, samples.limit or 0) / mib * 1.12,
                 "time (s)", "memory in use (MiB)")
    canvas.polyline([(plot.px(r["t"]), plot.py(r["bytes"] / mib)) for r in rows], "#1f77b4")
    canvas.text(plot.x + 8, plot.y + 16, f"{names[0]} (peak seen {peak / mib:.1f} MiB)", size=11, fill="#1f77b4")
    kernel_peak = max((r["kernel_peak"] for r in rows if r.get("kernel_peak") is not None), default=None)
    if kernel_peak is not None:  # what the kernel saw, between the samples too
        canvas.text(plot.x + 8, plot.y + 32, f"{os.path.basename(samples.files['peak'])}, the kernel's own "
                    f"high-water mark: {kernel_peak / mib:.1f} MiB", size=11, fill="#555")
    if samples.limit is not None:
        limit_y = plot.py(samples.limit / mib)
        canvas.line(plot.x, limit_y, plot.x + plot.w, limit_y, stroke=WARN, width=1.6, dash=True)
        canvas.text(plot.x + plot.w - 6, limit_y - 5, f"{names[1]}: {samples.limit / mib:g} MiB", size=11,
                    anchor="end", fill=WARN)
    for kill in kills:
        kx = plot.px(kill["t"])
        canvas.line(kx, plot.y, kx, plot.y + plot.h, stroke=WARN, width=2)
        canvas.circle(kx, plot.y + 8, 4, WARN)
        words = f"OOM kill (oom_kill {kill['from']} → {kill['to']})"
        label_width = len(words) * 6.6
        left = kx + 4 if kx < plot.x + plot.w / 2 else kx - 4 - label_width
        label_y = plot.y + plot.h * 0.55  # clear of the limit line near the top
        canvas.rect(left, label_y - 12, label_width, 17, fill="#fff", stroke=WARN, width=1, rx=3)
        canvas.text(left + 4, label_y, words, size=11, fill=WARN, weight="bold")
    if not kills:
        already = samples.rows[0]["oom_kills"]
        canvas.text(plot.x + 8, plot.y + 48, "no OOM kill while sampling"
                    + (f" (oom_kill was already {already})" if already else ""), size=11, fill="#555")
    facts = {"version": samples.version, "limit": samples.limit, "peak": peak, "kernel_peak": kernel_peak,
             "oom_kills": kills, "stopped": samples.stopped}
    return Picture(canvas.render(326, title), title, facts)
