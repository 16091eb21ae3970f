"""ipywidgets views of what the kernel holds, read through minicontainer.inspect only.

Static views (namespace_table, process_tree, mount_diff) are HTML snapshots. The
CgroupMonitor is live: a daemon thread refreshes it several times a second until
stop() is called or the cgroup disappears, so a headless run never hangs on it.
"""

from __future__ import annotations

import html
import os
import threading
import time

import ipywidgets as W

from .. import inspect
from ..errors import LabError

STYLE = """<style>
.mc-table {border-collapse: collapse; font-family: monospace; font-size: 12px}
.mc-table td, .mc-table th {border: 1px solid #ccc; padding: 2px 8px; text-align: left}
.mc-table tr.mc-differs td {background: #fff3cd}
.mc-muted {color: #888}
</style>"""


def _table(headers: list[str], rows: list[list[str]], marked: list[bool] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = ""
    for i, row in enumerate(rows):
        css = ' class="mc-differs"' if marked and marked[i] else ""
        body += f"<tr{css}>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
    return f'{STYLE}<table class="mc-table"><tr>{head}</tr>{body}</table>'


def table(headers: list[str], rows: list[list[str]]) -> W.HTML:
    """Any rows of text as a small table (values are escaped)."""
    return W.HTML(_table(headers, [[html.escape(str(cell)) for cell in row] for row in rows]))


def namespace_table(pid: int, reference: int | str = "self", labels=("this kernel", "container")) -> W.HTML:
    """Namespace identities of two processes side by side; rows that differ are marked."""
    mine, theirs = inspect.process(reference).namespaces, inspect.process(pid).namespaces
    rows = [[k, str(mine.get(k, "-")), str(theirs[k]), "own" if mine.get(k) != theirs[k] else "shared"]
            for k in theirs]
    return W.HTML(_table(["kind", labels[0], labels[1], ""], rows, [r[3] == "own" for r in rows]))


def doctor_table(checks) -> W.HTML:
    """minicontainer doctor's checks as a table; failed blockers marked."""
    rows = [[("ok" if c.ok else "FAIL" if c.blocker else "warn"), html.escape(c.name), html.escape(c.detail),
             "" if c.ok else html.escape(c.fix)] for c in checks]
    return W.HTML(_table(["", "check", "what was found", "what to do"], rows, [not c.ok for c in checks]))


def capability_table(pid: int, reference: int | str = "self", labels=("this kernel", "container")) -> W.HTML:
    """Every capability, and whether each of two processes has it in its bounding set; losses marked."""
    mine = set(inspect.process(reference).capabilities["bounding"])
    theirs = set(inspect.process(pid).capabilities["bounding"])
    names = [f"CAP_{name.upper()}" for name in inspect.CAPABILITIES]
    rows = [[n, "yes" if n in mine else "", "yes" if n in theirs else ""] for n in names if n in mine | theirs]
    return W.HTML(_table(["capability", labels[0], labels[1]], rows, [r[1] != r[2] for r in rows]))


def process_tree(pid: int) -> W.HTML:
    """A process and its descendants: PID as the host sees it, and as seen inside its PID namespace."""
    rows = []

    def walk(p: int, depth: int) -> None:
        try:
            info, kids = inspect.process(p), inspect.children(p)
        except (LabError, FileNotFoundError):
            return  # exited while we looked
        rows.append(["&nbsp;&nbsp;" * depth + html.escape(info.command), str(info.nspid[0]), str(info.nspid[-1])])
        for child in kids:
            walk(child, depth + 1)

    walk(pid, 0)
    return W.HTML(_table(["command", "PID on the host", "PID inside"], rows))


def mount_diff(pid: int, reference: int | str = "self", limit: int = 25) -> W.HTML:
    """Mount points only the container has, and how many of ours it does not see."""
    mine = {m.mount_point for m in inspect.mounts(reference)}
    theirs = inspect.mounts(pid)
    rows = [[html.escape(m.mount_point), m.fstype, html.escape(m.source), m.propagation]
            for m in theirs if m.mount_point not in mine or m.mount_point == "/"][:limit]
    missing = len(mine - {m.mount_point for m in theirs})
    note = f'<div class="mc-muted">{missing} of this kernel\'s mount points are not visible in the container</div>'
    return W.HTML(_table(["container mount point", "type", "source", "propagation"], rows) + note)


def network_view(pid: int) -> W.HTML:
    """Links, addresses and routes inside a container's network namespace beside this kernel's."""
    def column(data: dict) -> str:
        links = [[html.escape(k["name"]), k["state"] or "", k["kind"] or "", k["master"] or ""] for k in data["links"]]
        addrs = [[html.escape(a["link"] or ""), a["address"]] for a in data["addresses"]]
        routes = [[r["dst"], r["via"], html.escape(r["link"] or "")] for r in data["routes"]]
        return (_table(["link", "state", "kind", "bridge"], links) + _table(["link", "address"], addrs)
                + _table(["destination", "via", "link"], routes))
    inside, outside = inspect.network(pid), inspect.network("self")
    return W.HTML(f'<table><tr><th>inside the container</th><th>this kernel (the host)</th></tr>'
                  f'<tr><td style="vertical-align:top">{column(inside)}</td>'
                  f'<td style="vertical-align:top">{column(outside)}</td></tr></table>')


def _mib(value) -> str:
    return "-" if value is None else f"{value / 2**20:.1f} MiB"


def _sparkline(values: list[float], top: float, colour: str, width: int = 260, height: int = 40) -> str:
    if len(values) < 2 or top <= 0:
        return ""
    step = width / (len(values) - 1)
    points = " ".join(f"{i * step:.1f},{height - min(v, top) / top * height:.1f}" for i, v in enumerate(values))
    return f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}"/>'


class CgroupMonitor:
    """Live gauges and a small plot of a cgroup's memory, CPU, pids and OOM kills."""

    def __init__(self, cgroup, title: str = "", interval: float = 0.15, history: int = 120,
                 max_seconds: float = 900):
        self.cgroup = cgroup
        self.interval, self.history, self.max_seconds = interval, history, max_seconds
        self.memory_file = inspect.memory_file(cgroup)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_cpu: tuple[float, int] | None = None
        self.memory_points: list[float] = []
        self.cpu_points: list[float] = []
        self.last: dict = {}
        layout = W.Layout(width="260px")
        self.title = W.HTML(f"<b>{html.escape(title or cgroup.name)}</b>")
        self.memory_bar = W.FloatProgress(min=0, max=1, description="memory", layout=layout)
        self.cpu_bar = W.FloatProgress(min=0, max=1, description="CPU", layout=layout)
        self.pids_bar = W.FloatProgress(min=0, max=1, description="pids", layout=layout)
        self.memory_text, self.cpu_text, self.pids_text = W.HTML(), W.HTML(), W.HTML()
        self.events = W.HTML()
        self.plot = W.HTML()
        self.widget = W.VBox([self.title, W.HBox([self.memory_bar, self.memory_text]),
                              W.HBox([self.cpu_bar, self.cpu_text]), W.HBox([self.pids_bar, self.pids_text]),
                              self.events, self.plot])
        self.refresh()

    # -- reading -------------------------------------------------------------------------
    def refresh(self) -> bool:
        """Read the cgroup once and update the widgets; False once the cgroup is gone."""
        try:
            stats = inspect.cgroup_stats(self.cgroup)
        except (FileNotFoundError, OSError):
            self.events.value = '<span class="mc-muted">the cgroup is gone (the container ended)</span>'
            return False
        now = time.monotonic()
        cpu_fraction = 0.0
        if stats.get("cpu_usage_usec") is not None:
            if self._last_cpu:
                dt = now - self._last_cpu[0]
                cpu_fraction = (stats["cpu_usage_usec"] - self._last_cpu[1]) / 1e6 / dt if dt > 0 else 0.0
            self._last_cpu = (now, stats["cpu_usage_usec"])
        self.last = dict(stats, cpu_fraction=cpu_fraction)
        self._show(stats, cpu_fraction)
        return True

    def _show(self, stats: dict, cpu_fraction: float) -> None:
        current, limit = stats.get("memory_current") or 0, stats.get("memory_limit")
        self.memory_bar.max = float(limit or max(current * 2, 1))
        self.memory_bar.value = float(min(current, self.memory_bar.max))
        file_attr = html.escape(self.memory_file or "")
        self.memory_text.value = (f'<span class="mc-gauge-memory" data-bytes="{current}" data-file="{file_attr}">'
                                  f"{_mib(current)}</span> of {_mib(limit) if limit else 'no limit'}"
                                  f" (peak {_mib(stats.get('memory_peak'))})")
        cpu_limit = stats.get("cpu_limit") or float(os.cpu_count() or 1)
        self.cpu_bar.max = cpu_limit
        self.cpu_bar.value = min(cpu_fraction, cpu_limit)
        self.cpu_text.value = (f'<span class="mc-gauge-cpu">{cpu_fraction:.2f}</span> of '
                               f"{stats.get('cpu_limit') or 'all'} CPUs")
        pids, pids_limit = stats.get("pids_current") or 0, stats.get("pids_limit")
        self.pids_bar.max = float(pids_limit or max(pids * 2, 1))
        self.pids_bar.value = float(min(pids, self.pids_bar.max))
        self.pids_text.value = f'<span class="mc-gauge-pids">{pids}</span> of {pids_limit or "no limit"}'
        self.events.value = (f"OOM kills: <b>{stats.get('oom_kills', 0)}</b> &middot; throttled periods: "
                             f"<b>{stats.get('cpu_throttled', 0)}</b> &middot; forks refused: "
                             f"<b>{stats.get('pids_refused', 0)}</b>" + (" &middot; <b>frozen</b>"
                                                                         if stats.get("frozen") else ""))
        self.memory_points = (self.memory_points + [current])[-self.history:]
        self.cpu_points = (self.cpu_points + [cpu_fraction])[-self.history:]
        self.plot.value = ('<svg width="260" height="40" style="border:1px solid #ddd">'
                           + _sparkline(self.memory_points, float(limit or max(self.memory_points) or 1), "#1f77b4")
                           + _sparkline(self.cpu_points, cpu_limit, "#d62728") + "</svg>"
                           '<div class="mc-muted">blue: memory, red: CPU (last '
                           f"{self.history * self.interval:.0f} s)</div>")

    # -- the live thread ------------------------------------------------------------------
    def start(self) -> CgroupMonitor:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="cgroup-monitor", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.wait(self.interval) and time.monotonic() < deadline:
            if not self.refresh():
                break

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)


class CgroupTree:
    """Browse a cgroup hierarchy: pick a directory, see its interface files."""

    def __init__(self, root: str, max_depth: int = 4):
        self.root = root
        nodes = inspect.cgroup_tree(root, max_depth)
        options = [("  " * n.depth + (os.path.basename(n.path) or n.path) + f"  ({n.processes} procs)", n.path)
                   for n in nodes]
        self.picker = W.Select(options=options, rows=min(12, max(3, len(options))), layout=W.Layout(width="420px"))
        self.files = W.HTML()
        self.picker.observe(lambda change: self.show(change["new"]), names="value")
        self.widget = W.HBox([self.picker, self.files])
        if options:
            self.picker.value = options[0][1]
            self.show(options[0][1])

    def show(self, directory: str) -> None:
        try:
            files = inspect.cgroup_files(directory)
        except FileNotFoundError:
            self.files.value = '<span class="mc-muted">this cgroup is gone</span>'
            return
        rows = [[html.escape(name), html.escape(value).replace("\n", "<br>")] for name, value in files.items()]
        self.files.value = f"<div style='max-height:300px; overflow:auto'>{_table(['file', 'content'], rows)}</div>"

    def _ipython_display_(self) -> None:
        from IPython.display import display
        display(self.widget)
