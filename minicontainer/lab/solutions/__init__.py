"""Solutions to the lab's exercises, one module per notebook. Try first: no notebook imports this.

    from minicontainer.lab import solutions
    solutions.show("cgroups-lab-48m")     # print the solution's code
    box = solutions.solve("cgroups-lab-48m")

Each module also names a wrong attempt per exercise (WRONG: key -> (attempt, words the checker must
use)), and, where the learner writes a function, the notebook's blank template (BLANK: key -> the
function as handed out): the tests require every checker to pass the solution and to refuse the
wrong attempt, the blank template and nothing at all.
"""

from __future__ import annotations

import inspect as source_code

from . import lesson00, lesson01, lesson02, lesson03, lesson04, lesson05, lesson06, lesson07, lesson08

LESSONS = (lesson00, lesson01, lesson02, lesson03, lesson04, lesson05, lesson06, lesson07, lesson08)
SOLVERS = {key: solver for lesson in LESSONS for key, solver in lesson.SOLVERS.items()}
WRONG = {key: wrong for lesson in LESSONS for key, wrong in lesson.WRONG.items()}
# For exercises in which the learner writes a function: the notebook's template, as handed out.
BLANK = {key: blank for lesson in LESSONS for key, blank in getattr(lesson, "BLANK", {}).items()}


def solve(key: str):
    """The answer the checker expects: the solution's function itself where the learner writes a
    function (an exercise with a BLANK template), else what running the solution gives (a value or
    a running container)."""
    return SOLVERS[key] if key in BLANK else SOLVERS[key]()


def show(key: str) -> None:
    """Print the solution's code."""
    print(source_code.getsource(SOLVERS[key]))
