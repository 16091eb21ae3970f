"""Exercises: each is data (the task, its hints) plus a checker that reads the kernel's state.

A checker looks at what the learner built (a running container, a value they found),
never at the code they typed, and returns the problems it sees; none means solved.
Solutions live in minicontainer.lab.solutions, which no notebook imports by default.

Hints come one failed check at a time: the first nudges (the idea, the kernel state to look
at), the next names the interface (the file, system call or function), none gives the answer.
"""

from __future__ import annotations

import html
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Where check() records each attempt, one JSON line: a class host sets it for every learner's server
# (vagrant/class-host.sh), and the instructor's view reads it (minicontainer.classroom.instructor).
PROGRESS_ENV = "MINICONTAINER_PROGRESS"


@dataclass
class Exercise:
    key: str
    task: str
    hints: tuple[str, ...]  # the nudge first, then the interface
    checker: Callable[[object], list[str]]

    def __post_init__(self):
        # A bare string would pass for a tuple of one-letter hints.
        if isinstance(self.hints, str) or len(self.hints) < 2:
            raise TypeError(f"{self.key}: hints must be a tuple of at least two strings (nudge, interface)")


MORE_HINTS = "check again for a more specific hint"


@dataclass
class Result:
    key: str
    problems: list[str] = field(default_factory=list)
    hints: tuple[str, ...] = ()  # those given so far, in order
    hints_held_back: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        if self.ok:
            return f"✓ {self.key}: solved"
        lines = [f"✗ {self.key}: not yet"] + [f"  - {p}" for p in self.problems]
        lines += [f"  hint {number}: {hint}" for number, hint in enumerate(self.hints, 1)]
        if self.hints_held_back:
            lines.append(f"  ({MORE_HINTS})")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        if self.ok:
            return f'<div style="color:#137333">&#10003; <b>{html.escape(self.key)}</b>: solved</div>'
        items = "".join(f"<li>{html.escape(p)}</li>" for p in self.problems)
        hints = "".join(f"<div><i>hint {number}:</i> {html.escape(hint)}</div>"
                        for number, hint in enumerate(self.hints, 1))
        more = f"<div><i>({MORE_HINTS})</i></div>" if self.hints_held_back else ""
        return (f'<div style="color:#a50e0e">&#10007; <b>{html.escape(self.key)}</b>: not yet<ul>{items}</ul>'
                f"{hints}{more}</div>")


# Failed checks per exercise key in this process: a notebook's kernel lives for the whole lesson,
# so the hints given grow with the learner's attempts. A solved check starts the count again.
_failed_checks: dict[str, int] = {}


def forget_attempts() -> None:
    """Forget every failed check, so that the next failure gives the first hint again."""
    _failed_checks.clear()


def reset() -> list[str]:
    """Stop every container this kernel started (a notebook's reset cell calls this)."""
    from ..container import stop_all
    return stop_all()


def all_exercises() -> dict[str, Exercise]:
    from .exercises import all_exercises as every
    return {e.key: e for e in every()}


def task(key: str) -> str:
    return all_exercises()[key].task


def check(key: str, answer) -> Result:
    """Check an answer against the kernel's state; the Result says what is wrong, with one more
    hint for each failed check of this exercise (none while there is nothing to check)."""
    exercise = all_exercises()[key]
    if answer is None:  # not tried yet: a hint now would come before any attempt
        return Result(key, ["nothing to check yet: set the variable the task names, then run this cell again"])
    if _untouched(answer):  # a template as the notebook gives it (Run All reaches it before the learner)
        return Result(key, [f"nothing to check yet: {answer.__name__}() has no body of yours; write it, then run "
                            "this cell again"])
    from .exercises import Problems
    try:
        problems = exercise.checker(answer)
    except Problems as e:
        problems = e.problems
    except Exception as e:  # a learner's odd answer must give advice, not a traceback
        problems = [f"could not check this answer: {type(e).__name__}: {e}"]
    if not problems:
        _failed_checks.pop(key, None)
        _record(key, problems)
        return Result(key)
    _failed_checks[key] = failures = _failed_checks.get(key, 0) + 1
    given = exercise.hints[:failures]
    _record(key, problems)
    return Result(key, problems, given, len(exercise.hints) - len(given))


def _record(key: str, problems: list[str]) -> None:
    """One line for the instructor, where the class host asks for it (PROGRESS_ENV): when, which exercise,
    solved or not, and the first problem seen."""
    path = os.environ.get(PROGRESS_ENV)
    if not path:
        return
    line = {"time": time.time(), "key": key, "ok": not problems, "problem": problems[0][:200] if problems else ""}
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a") as f:  # O_APPEND: each line lands whole at the end
            f.write(json.dumps(line) + "\n")
    except OSError:
        pass  # the record serves the instructor: a learner's check must not fail for its sake


def _untouched(answer) -> bool:
    """A function whose body is only `...`, `pass` or a docstring: a template not yet written."""
    import ast
    import inspect
    import textwrap
    if not callable(answer):
        return False
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(answer)))
    except (OSError, TypeError, SyntaxError):
        return False
    function = tree.body[0] if tree.body else None
    if not isinstance(function, ast.FunctionDef):
        return False
    return all(isinstance(node, ast.Pass) or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
               for node in function.body)


def _nothing(ctx) -> None:
    """In place of a skipped step: does nothing, so the runtime's step does not run either."""


def without(stage, *skipped: str, **spec_changes):
    """The counterfactual of a lesson's check: a fresh stage of the same spec (with spec_changes,
    e.g. namespaces without "pid"), advanced as far as `stage` is, but with the named steps
    skipped, and every step that needs one of them (a step's `after`: the hostname needs the UTS
    namespace, every mount needs private mounts). A lesson's check run on it must fail: else it
    does not test that step."""
    import dataclasses

    from ..process import steps
    from ..stage import Stage
    spec = dataclasses.replace(stage.spec, name="", **spec_changes)
    plan = steps.plan(spec)
    off = set(skipped)
    for step in plan:  # in order, so that what needs a skipped step is skipped too
        if off & set(step.after):
            off.add(step.name)
    twin = Stage(spec)
    for step in plan:
        if step.name not in stage.done:
            continue
        if step.name in off:
            twin.replace(step.name, _nothing)
        elif step.name not in twin.done:
            twin.run_until(step.name)
    return twin


# -- %%root_only: a lesson's cell that needs root on the machine ---------------------------------------------

def load_ipython_extension(ipython) -> None:
    """`%load_ext minicontainer.lab` in a lesson's setup: registers the %%root_only cell magic."""
    ipython.register_magic_function(root_only, magic_kind="cell", magic_name="root_only")


def root_only(line: str, cell: str) -> None:
    """%%root_only WHY: as root, the cell runs as any other (an assert that fails, fails the cell).
    Without root (a learner on a class host), it says why it cannot run, and runs nothing."""
    from IPython import get_ipython
    if os.geteuid() == 0:
        get_ipython().ex(cell)
        return
    from IPython.display import HTML, display
    display(HTML(f"<div style='border-left: 4px solid #c90; padding: 4px 10px'><b>Not run here: this cell needs "
                 f"root on this machine.</b> {html.escape(line.strip())}. You run without root (uid "
                 f"{os.geteuid()}), as a class host's learners do: read the cell and what it shows; the lab VM, "
                 "where you are root, runs it.</div>"))
