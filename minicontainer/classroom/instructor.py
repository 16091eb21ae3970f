"""The instructor's view: every learner's exercise results, live, with who is stuck where, and a reset.

A JupyterHub service (vagrant/class-host.sh configures it; the hub starts it, as root, and sends only users with
access to it, the class's instructors, through its OAuth). It reads what each learner's checks recorded
(minicontainer.lab.PROGRESS_ENV: one JSON line per check, in the learner's home) and asks the hub, with the
service's own token, which learners there are and whose server runs. A reset stops the learner's server (its
unit, and every container in it, goes), keeps their old lessons beside the fresh copy, and keeps their work.

    python -m minicontainer.classroom.instructor --lessons DIR --home '/home/{name}' --progress REL_PATH
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass

STUCK_AFTER = 3  # failed checks of one exercise in a row, with no success since


@dataclass
class Exercise:
    attempts: int = 0   # failed checks since the last success
    solved: bool = False
    problem: str = ""   # the last failed check's first problem
    last: float = 0.0


def read_progress(path: str, owner: int) -> list[dict]:
    """The records one learner's checks wrote; a line cut short (a check still writing) is left out. This
    service runs as root and the path is the learner's to change: only a regular file of the learner's own
    (uid `owner`), not a link to someone else's, is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return []
    with open(fd) as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != owner:
            return []
        lines = f.readlines()
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def summarise(records: list[dict]) -> dict[str, Exercise]:
    """Per exercise: solved (ever), failed checks since the last success, the latest problem."""
    seen: dict[str, Exercise] = {}
    for record in sorted(records, key=lambda r: r.get("time", 0)):
        exercise = seen.setdefault(record["key"], Exercise())
        exercise.last = record.get("time", 0)
        if record.get("ok"):
            exercise.solved, exercise.attempts, exercise.problem = True, 0, ""
        else:
            exercise.attempts += 1
            exercise.problem = record.get("problem", "")
    return seen


def stuck_at(summary: dict[str, Exercise]) -> str | None:
    """The exercise a learner is stuck at: the latest one checked, failed STUCK_AFTER times or more in a row."""
    if not summary:
        return None
    key, latest = max(summary.items(), key=lambda item: item[1].last)
    return key if latest.attempts >= STUCK_AFTER else None


def reset_lessons(home: str, lessons: str) -> str:
    """Fresh lessons in HOME/lab; the old ones kept as HOME/lab.before-reset-TIME, their work/ moved over. Done
    as the home's owner (setpriv), never as root in a directory the learner controls (a link planted there
    would lead root's copies and chowns elsewhere). Returns where the old ones are."""
    owner = os.stat(home)
    out = subprocess.run(["setpriv", f"--reuid={owner.st_uid}", f"--regid={owner.st_gid}", "--clear-groups",
                          sys.executable, "-c", "import sys; from minicontainer.classroom.instructor import "
                          "reset_as_owner; print(reset_as_owner(*sys.argv[1:]))", home, lessons],
                         capture_output=True, text=True, timeout=120, cwd="/")
    if out.returncode != 0:
        raise RuntimeError(f"resetting {home}/lab failed: {out.stderr.strip()[-500:]}")
    return out.stdout.strip()


def reset_as_owner(home: str, lessons: str) -> str:
    """reset_lessons' work, in the learner's own process."""
    lab = os.path.join(home, "lab")
    kept = f"{lab}.before-reset-{time.strftime('%Y%m%d-%H%M%S')}"
    if os.path.lexists(lab):
        os.rename(lab, kept)
    shutil.copytree(lessons, lab, ignore=shutil.ignore_patterns("work", ".ipynb_checkpoints"))
    if os.path.isdir(os.path.join(kept, "work")):
        os.rename(os.path.join(kept, "work"), os.path.join(lab, "work"))
    else:
        os.mkdir(os.path.join(lab, "work"))
    return kept


def make_app(lessons: str, home_template: str, progress: str):
    """The tornado application: the page at the service's prefix, a reset per learner, OAuth's callback."""
    from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
    from jupyterhub.utils import url_path_join
    from tornado import web
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest

    from ..lab import all_exercises

    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/instructor/")
    api_url, token = os.environ["JUPYTERHUB_API_URL"], os.environ["JUPYTERHUB_API_TOKEN"]
    keys = list(all_exercises())  # in the lessons' order

    async def hub(method: str, path: str) -> dict | list | None:
        answer = await AsyncHTTPClient().fetch(HTTPRequest(
            url_path_join(api_url, path), method=method, headers={"Authorization": f"token {token}"},
            allow_nonstandard_methods=True, body=None), raise_error=True)
        return json.loads(answer.body) if answer.body else None

    class Page(HubOAuthenticated, web.RequestHandler):
        @web.authenticated
        async def get(self):
            learners = [u for u in await hub("GET", "users") if not u.get("admin")]
            rows = []
            for user in sorted(learners, key=lambda u: u["name"]):
                name = user["name"]
                home = home_template.format(name=name)
                summary = summarise(read_progress(os.path.join(home, progress), _owner(home)))
                server = user.get("servers", {}).get("")
                cells = "".join(self.cell(summary.get(key)) for key in keys)
                where = stuck_at(summary)
                rows.append(
                    f"<tr><th>{html.escape(name)}</th><td>{'running' if server else 'stopped'}</td>"
                    f"<td>{sum(e.solved for e in summary.values())}/{len(keys)}</td>"
                    f"<td class=stuck>{html.escape(where or '')}</td>{cells}"
                    f"<td><form method=post action='{prefix}reset/{urllib.parse.quote(name)}'>"
                    f"{self.xsrf_form_html()}<button>reset</button></form></td></tr>")
            head = "".join(f"<th class=key title='{html.escape(k)}'>{html.escape(k)}</th>" for k in keys)
            self.write(
                "<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=10>"
                "<title>minicontainer lab: the class</title><style>body{font:13px sans-serif}"
                "td,th{border:1px solid #ddd;padding:2px 4px}.key{writing-mode:vertical-rl;font-weight:normal}"
                ".ok{background:#cfc}.no{background:#fcc}.stuck{color:#a00;font-weight:bold}</style>"
                f"<h1>The class: {len(learners)} learners</h1><p>Each check a learner runs lands here (the page "
                f"reloads every 10 s). Stuck: the latest exercise checked failed {STUCK_AFTER} or more times in a "
                "row. Reset: stops the learner's server and every container in it, gives fresh lessons (the old "
                "ones kept beside them, work/ moved over).</p>"
                f"<table><tr><th>learner</th><th>server</th><th>solved</th><th>stuck at</th>{head}<th></th></tr>"
                + "".join(rows) + "</table>")

        @staticmethod
        def cell(exercise: Exercise | None) -> str:
            if exercise is None:
                return "<td></td>"
            if exercise.solved and not exercise.attempts:
                return "<td class=ok>&#10003;</td>"
            mark = "&#10003; " if exercise.solved else ""
            return f"<td class=no title='{html.escape(exercise.problem)}'>{mark}&#10007;{exercise.attempts}</td>"

    class Reset(HubOAuthenticated, web.RequestHandler):
        @web.authenticated
        async def post(self, name: str):
            users = {u["name"]: u for u in await hub("GET", "users")}
            if name not in users or users[name].get("admin"):
                raise web.HTTPError(404, f"no learner named {name}")
            if users[name].get("servers", {}).get(""):
                await hub("DELETE", f"users/{urllib.parse.quote(name)}/server")
                for _ in range(120):  # until the hub says it is gone: its unit, and the containers in it
                    user = await hub("GET", f"users/{urllib.parse.quote(name)}")
                    if not user.get("servers", {}).get(""):
                        break
                    await asyncio.sleep(0.5)
            try:
                reset_lessons(home_template.format(name=name), lessons)
            except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                why = f"{name}'s server is stopped, but their lessons were not reset: see their home, reset again"
                raise web.HTTPError(500, f"{why}: {e}", reason=why) from None
            self.redirect(prefix)

    return web.Application([
        (prefix, Page),
        (url_path_join(prefix, r"reset/([^/]+)"), Reset),
        (url_path_join(prefix, "oauth_callback"), HubOAuthCallbackHandler),
    ], cookie_secret=secrets.token_bytes(32), xsrf_cookies=True, login_url=HubOAuth.instance().login_url)


def _owner(home: str) -> int:
    try:
        return os.stat(home).st_uid
    except OSError:
        return -1  # no home: nothing of theirs to read


def main(argv: list[str] | None = None) -> None:
    from tornado.ioloop import IOLoop

    parser = argparse.ArgumentParser(prog="python -m minicontainer.classroom.instructor")
    parser.add_argument("--lessons", required=True, help="the notebooks a reset copies (the checkout's notebooks/)")
    parser.add_argument("--home", default="/home/{name}", help="a learner's home, {name} their user name")
    parser.add_argument("--progress", default=".minicontainer/progress.jsonl",
                        help="the progress file, relative to a learner's home")
    args = parser.parse_args(argv)
    url = urllib.parse.urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    make_app(args.lessons, args.home, args.progress).listen(url.port, url.hostname)
    IOLoop.current().start()


if __name__ == "__main__":
    main()
