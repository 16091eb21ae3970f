"""Every exercise checker, three ways: nothing done, a wrong answer, the solution."""

from __future__ import annotations

import pytest

from minicontainer.container import Container
from minicontainer.lab import all_exercises, check, solutions
from minicontainer.rootfs import DEFAULT_ROOTFS as IMAGE
from minicontainer.spec import ContainerSpec


def test_every_exercise_has_a_solution_and_a_wrong_answer():
    assert set(all_exercises()) == set(solutions.SOLVERS) == set(solutions.WRONG)


def stopped(answer) -> None:
    for container in answer if isinstance(answer, tuple) else [answer]:
        if isinstance(container, Container):
            container.stop(grace=0.5)


@pytest.mark.parametrize("key", sorted(solutions.WRONG))
def test_checker_three_ways(image, key):
    nothing = check(key, None)
    assert not nothing.ok and nothing.hint and "nothing to check yet" in str(nothing)

    make_wrong, words = solutions.WRONG[key]
    wrong = make_wrong()
    try:
        result = check(key, wrong)
        assert not result.ok
        assert any(words in problem for problem in result.problems), result.problems
    finally:
        stopped(wrong)

    if key in solutions.BLANK:
        blank = check(key, solutions.BLANK[key])
        assert not blank.ok and blank.problems, "the notebook's template passes as it is"

    right = solutions.solve(key)
    try:
        result = check(key, right)
        assert result.ok, result.problems
    finally:
        stopped(right)


def test_a_finished_container_is_not_accepted(image):
    box = Container.start(ContainerSpec(IMAGE, ["true"], hostname="lab", memory="48M"))
    box.wait(10)
    result = check("cgroups-lab-48m", box)
    assert not result.ok and "not running" in result.problems[0]


def test_a_wrong_type_gets_advice_not_a_traceback():
    result = check("cgroups-lab-48m", "a string")
    assert not result.ok and "expected a running Container" in result.problems[0]
