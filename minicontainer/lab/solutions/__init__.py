"""Solutions to the lab's exercises, one module per notebook. Try first: no notebook imports this.

    from minicontainer.lab import solutions
    solutions.show("cgroups-lab-48m")     # print the solution's code
    box = solutions.solve("cgroups-lab-48m")

Each module also names a wrong attempt per exercise (WRONG: key -> (attempt, words the checker must
use)): the tests require every checker to pass the solution and to refuse both the wrong attempt and
nothing at all.
"""

from __future__ import annotations

import inspect as source_code

from . import lesson00, lesson01, lesson02, lesson03, lesson04, lesson05, lesson06

LESSONS = (lesson00, lesson01, lesson02, lesson03, lesson04, lesson05, lesson06)
SOLVERS = {key: solver for lesson in LESSONS for key, solver in lesson.SOLVERS.items()}
WRONG = {key: wrong for lesson in LESSONS for key, wrong in lesson.WRONG.items()}


def solve(key: str):
    """Run the solution: the answer the checker expects (a value, a function, or a running container)."""
    return SOLVERS[key]()


def show(key: str) -> None:
    """Print the solution's code."""
    print(source_code.getsource(SOLVERS[key]))
