"""Exercises: each is data (the task, a hint) plus a checker that reads the kernel's state.

A checker looks at what the learner built (a running container, a value they found),
never at the code they typed, and returns the problems it sees; none means solved.
Solutions live in minicontainer.lab.solutions, which no notebook imports by default.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Exercise:
    key: str
    task: str
    hint: str
    checker: Callable[[object], list[str]]


@dataclass
class Result:
    key: str
    problems: list[str] = field(default_factory=list)
    hint: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        if self.ok:
            return f"✓ {self.key}: solved"
        lines = [f"✗ {self.key}: not yet"] + [f"  - {p}" for p in self.problems]
        return "\n".join(lines + [f"  hint: {self.hint}"])

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        if self.ok:
            return f'<div style="color:#137333">&#10003; <b>{html.escape(self.key)}</b>: solved</div>'
        items = "".join(f"<li>{html.escape(p)}</li>" for p in self.problems)
        return (f'<div style="color:#a50e0e">&#10007; <b>{html.escape(self.key)}</b>: not yet<ul>{items}</ul>'
                f'<i>hint:</i> {html.escape(self.hint)}</div>')


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
    """Check an answer against the kernel's state; the Result says what is wrong and hints."""
    exercise = all_exercises()[key]
    if answer is None:
        return Result(key, ["nothing to check yet: set the variable the task names, then run this cell again"],
                      exercise.hint)
    from .exercises import Problems
    try:
        problems = exercise.checker(answer)
    except Problems as e:
        problems = e.problems
    except Exception as e:  # a learner's odd answer must give advice, not a traceback
        problems = [f"could not check this answer: {type(e).__name__}: {e}"]
    return Result(key, problems, exercise.hint)


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
