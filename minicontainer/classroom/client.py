"""A learner at the hub, as a browser would be: log in with the login card's password, start the server, run
code in a kernel of it over the kernel's websocket. Only JupyterHub's and Jupyter Server's public REST and
websocket APIs; the standard library and tornado (which Jupyter Server already needs).

    python -m minicontainer.classroom.client URL USER PASSWORD CODE... [--file PATH]   each CODE one cell
    python -m minicontainer.classroom.client URL USER PASSWORD --notebook PATH    every code cell of a notebook
    python -m minicontainer.classroom.client URL USER PASSWORD --get PATH         a page of the hub, logged in
"""

from __future__ import annotations

import argparse
import asyncio
import http.cookiejar
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field


class HubError(Exception):
    """What the hub or the learner's server refused, with its answer."""


@dataclass
class CellResult:
    status: str                    # "ok" or "error"
    stdout: str = ""
    error: str = ""                # "Name: value" of an exception raised in the cell
    outputs: list = field(default_factory=list)


class Learner:
    def __init__(self, hub_url: str, name: str, password: str, timeout: float = 60):
        self.hub = hub_url.rstrip("/") + "/"
        self.name, self.password, self.timeout = name, password, timeout
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))
        self.token: str | None = None

    # -- HTTP ---------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: dict | bytes | None = None, headers: dict | None = None):
        url = urllib.parse.urljoin(self.hub, path.lstrip("/"))
        headers = dict(headers or {})
        if isinstance(body, dict):
            body, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        if self.token:
            headers["Authorization"] = f"token {self.token}"
        request = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with self.opener.open(request, timeout=self.timeout) as answer:
                text = answer.read().decode()
                return answer.status, answer.geturl(), text
        except urllib.error.HTTPError as e:
            raise HubError(f"{method} {url}: {e.code} {e.reason}: {e.read().decode(errors='replace')[:500]}") from None

    def _api(self, method: str, path: str, body: dict | None = None):
        _, _, text = self._request(method, path, body)
        return json.loads(text) if text.strip() else None

    def _xsrf(self) -> str:
        return next((c.value for c in self.cookies if c.name == "_xsrf"), "")

    # -- the hub ------------------------------------------------------------------------------
    def log_in(self) -> None:
        """The login form, as a browser posts it; then a token of the learner's own for the API calls."""
        self._request("GET", "hub/login")
        form = urllib.parse.urlencode({"username": self.name, "password": self.password, "_xsrf": self._xsrf()})
        try:
            _, landed, _ = self._request("POST", "hub/login", form.encode(),
                                         {"Content-Type": "application/x-www-form-urlencoded"})
        except HubError as e:
            if ": 403 " in str(e):  # the login form's answer to a wrong user or password
                raise HubError(f"the hub refused {self.name}'s user name or password: check the login card") from None
            raise
        if not any(c.name.startswith("jupyterhub-session-id") or c.name == "jupyterhub-hub-login"
                   for c in self.cookies):
            raise HubError(f"no hub session for {self.name} after logging in (landed on {landed})")
        created = self._request("POST", f"hub/api/users/{self.name}/tokens", json.dumps(
            {"note": "minicontainer.classroom.client", "expires_in": 3600}).encode(),
            {"Content-Type": "application/json", "X-XSRFToken": self._xsrf()})[2]
        self.token = json.loads(created)["token"]

    def start_server(self, wait: float = 300) -> None:
        """Ask for the learner's server and wait until the hub says it is ready (a systemd unit, here)."""
        state = self._api("GET", f"hub/api/users/{self.name}")
        if not state.get("servers", {}).get("", {}).get("ready"):
            try:
                self._api("POST", f"hub/api/users/{self.name}/server")
            except HubError as e:
                if " 400 " not in str(e):  # 400: already starting
                    raise
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            server = self._api("GET", f"hub/api/users/{self.name}").get("servers", {}).get("", {})
            if server.get("ready"):
                return
            time.sleep(1)
        raise HubError(f"{self.name}'s server was not ready after {wait:.0f} s")

    def stop_server(self) -> None:
        self._api("DELETE", f"hub/api/users/{self.name}/server")

    # -- a kernel in the learner's server -------------------------------------------------------
    def start_kernel(self) -> str:
        return self._api("POST", f"user/{self.name}/api/kernels", {"name": "python3"})["id"]

    def shutdown_kernel(self, kernel: str) -> None:
        self._api("DELETE", f"user/{self.name}/api/kernels/{kernel}")

    def run(self, kernel: str, cells: list[str], cell_timeout: float = 900, keep_going: bool = False
            ) -> list[CellResult]:
        """Each cell in turn, in one kernel, stopping at the first that raises (keep_going: running them all)."""
        return asyncio.run(self._run(kernel, cells, cell_timeout, keep_going))

    async def _run(self, kernel: str, cells: list[str], cell_timeout: float, keep_going: bool) -> list[CellResult]:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        url = urllib.parse.urljoin(self.hub.replace("http", "ws", 1), f"user/{self.name}/api/kernels/{kernel}/channels")
        socket = await websocket_connect(HTTPRequest(url, headers={"Authorization": f"token {self.token}"}))
        session, results = uuid.uuid4().hex, []
        try:
            for code in cells:
                result = await self._execute(socket, session, code, cell_timeout)
                results.append(result)
                if result.status != "ok" and not keep_going:
                    break
        finally:
            socket.close()
        return results

    @staticmethod
    async def _execute(socket, session: str, code: str, timeout: float) -> CellResult:
        msg_id = uuid.uuid4().hex
        socket.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": session, "username": "",
                       "version": "5.3", "date": ""},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        result, replied, idle = CellResult("ok"), False, False
        deadline = time.monotonic() + timeout
        while not (replied and idle):
            left = deadline - time.monotonic()
            if left <= 0:
                raise HubError(f"a cell did not finish in {timeout:.0f} s:\n{code[:300]}")
            raw = await asyncio.wait_for(socket.read_message(), left)
            if raw is None:
                raise HubError("the kernel's websocket closed (the server or kernel died?)")
            if isinstance(raw, bytes):
                continue  # binary frames: widget buffers, not needed here
            message = json.loads(raw)
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "stream":
                result.stdout += content.get("text", "")
            elif kind in ("execute_result", "display_data"):
                result.outputs.append(content.get("data", {}))
            elif kind == "error":
                result.status, result.error = "error", f"{content['ename']}: {content['evalue']}"
            elif kind == "execute_reply":
                replied = True
                if content.get("status") != "ok":
                    result.status = "error"
                    result.error = result.error or f"{content.get('ename')}: {content.get('evalue')}"
            elif kind == "status" and content.get("execution_state") == "idle":
                idle = True
        return result


def notebook_cells(path: str) -> list[str]:
    with open(path) as f:
        notebook = json.load(f)
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m minicontainer.classroom.client",
                                     description="log in to the class hub as a learner and run code there")
    parser.add_argument("url")
    parser.add_argument("user")
    parser.add_argument("password")
    parser.add_argument("code", nargs="*", help="cells to run, one argument each")
    parser.add_argument("--file", help="then this Python file, as one more cell (a path on this machine)")
    parser.add_argument("--notebook", help="run every code cell of this notebook (a path on this machine)")
    parser.add_argument("--cell-timeout", type=float, default=900)
    parser.add_argument("--keep-going", action="store_true", help="run every cell, and report each that failed")
    parser.add_argument("--get", metavar="PATH", help="instead: print the page at PATH of the hub, logged in "
                        "(e.g. services/instructor/, the instructor's view)")
    args = parser.parse_args(argv)
    if args.get:
        learner = Learner(args.url, args.user, args.password)
        try:
            learner.log_in()
            print(learner._request("GET", args.get)[2])
        except HubError as e:
            print(f"{args.user}: {e}", file=sys.stderr)
            return 2
        return 0
    cells = notebook_cells(args.notebook) if args.notebook else list(args.code)
    if args.file:
        with open(args.file) as f:
            cells.append(f.read())
    learner = Learner(args.url, args.user, args.password)
    try:
        learner.log_in()
        learner.start_server()
        kernel = learner.start_kernel()
        try:
            results = learner.run(kernel, cells, args.cell_timeout, args.keep_going)
        finally:
            learner.shutdown_kernel(kernel)
    except HubError as e:
        print(f"{args.user}: {e}", file=sys.stderr)
        return 2
    failed = 0
    for number, result in enumerate(results, 1):
        sys.stdout.write(result.stdout)
        if result.status != "ok":
            failed += 1
            print(f"{args.user}: code cell {number} of {len(cells)} failed: {result.error}", file=sys.stderr)
    print(f"{args.user}: {len(results)} cell(s) ran, {failed} failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
