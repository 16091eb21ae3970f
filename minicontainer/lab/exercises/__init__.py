"""The lab's exercises, one module per notebook. Every checker reads /proc or cgroupfs (through inspect)."""

from __future__ import annotations

import os
from contextlib import contextmanager

from ...container import Container
from ...errors import LabError


def running(answer) -> list[str]:
    """Problems if the answer is not a running container; [] if it is."""
    if not isinstance(answer, Container):
        return [f"expected a running Container (from Container.start), got {type(answer).__name__}"]
    if not answer.running() or not os.path.exists(f"/proc/{answer.pid}"):
        return ["the container is not running any more: give it a command that lasts, e.g. ['sleep', '600']"]
    return []


def all_exercises() -> list:
    from . import lesson00, lesson01, lesson02, lesson03, lesson04, lesson05, lesson06, lesson07, lesson08
    lessons = (lesson00, lesson01, lesson02, lesson03, lesson04, lesson05, lesson06, lesson07, lesson08)
    return [exercise for lesson in lessons for exercise in lesson.EXERCISES]


class Problems(Exception):
    """What a checker found wrong before it could look further (check() reports them)."""

    def __init__(self, *problems: str):
        super().__init__(*problems)
        self.problems = list(problems)


@contextmanager
def staged_attempt(spec, step: str, function, *, start: bool = True):
    """A learner-written step, tried for real: a fresh stage of `spec` run up to `step`, the
    function in the step's place, then (start=True) the remaining steps and exec. Yields the
    running Container (or the Stage, start=False); everything is torn down after. A function
    that fails, or a container that cannot start after it, becomes a Problems with its message."""
    from ...stage import Stage
    if not callable(function):
        raise Problems(f"expected a function (def ...), got {type(function).__name__}")
    stage = Stage(spec)
    box = None
    try:
        order = [name for name, _, _ in stage.steps]
        if order.index(step) > 0:
            stage.run_until(order[order.index(step) - 1])
        try:
            stage.replace(step, function)
        except LabError as e:
            raise Problems(f"your function failed: {e.what}", f"({e.cause})") from None
        if not start:
            yield stage
            return
        try:
            box = stage.start()
        except LabError as e:
            raise Problems(f"after your {step}, the container could not start: {e.what}") from None
        yield box
    finally:
        if box is not None:
            box.stop(grace=0)
        stage.teardown()
