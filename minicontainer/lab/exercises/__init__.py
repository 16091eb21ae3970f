"""The lab's exercises, one module per notebook. Every checker reads /proc or cgroupfs (through inspect)."""

from __future__ import annotations

import os

from ...container import Container


def running(answer) -> list[str]:
    """Problems if the answer is not a running container; [] if it is."""
    if not isinstance(answer, Container):
        return [f"expected a running Container (from Container.start), got {type(answer).__name__}"]
    if not answer.running() or not os.path.exists(f"/proc/{answer.pid}"):
        return ["the container is not running any more: give it a command that lasts, e.g. ['sleep', '600']"]
    return []


def all_exercises() -> list:
    from . import lesson00, lesson01, lesson02, lesson03, lesson04, lesson05, lesson06
    lessons = (lesson00, lesson01, lesson02, lesson03, lesson04, lesson05, lesson06)
    return [exercise for lesson in lessons for exercise in lesson.EXERCISES]
