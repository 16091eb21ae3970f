"""Every exercise checker, three ways: nothing done, a wrong answer, the solution; and the hints,
which come one failed check at a time and never give the solution away."""

from __future__ import annotations

import inspect as source_code

import pytest

from minicontainer.container import Container
from minicontainer.lab import MORE_HINTS, all_exercises, check, engines, forget_attempts, solutions
from minicontainer.lab.exercises import Problems
from minicontainer.rootfs import DEFAULT_ROOTFS as IMAGE
from minicontainer.spec import ContainerSpec


@pytest.fixture(autouse=True)
def no_earlier_attempts():
    """Each test starts as a learner who has not checked anything yet."""
    forget_attempts()
    yield
    forget_attempts()


def test_every_exercise_has_a_solution_and_a_wrong_answer():
    assert set(all_exercises()) == set(solutions.SOLVERS) == set(solutions.WRONG)


def stopped(answer) -> None:
    for container in answer if isinstance(answer, tuple) else [answer]:
        if isinstance(container, Container):
            container.stop(grace=0.5)


@pytest.mark.parametrize("key", sorted(solutions.WRONG))
def test_checker_three_ways(image, key):
    nothing = check(key, None)
    assert not nothing.ok and not nothing.hints and "nothing to check yet" in str(nothing)

    make_wrong, words = solutions.WRONG[key]
    wrong = make_wrong()
    try:
        result = check(key, wrong)
        assert not result.ok
        assert any(words in problem for problem in result.problems), result.problems
    finally:
        stopped(wrong)

    if key in solutions.BLANK:
        # check() says an untouched template is not an attempt yet; the checker itself still refuses it.
        blank = check(key, solutions.BLANK[key])
        assert not blank.ok and "nothing to check yet" in str(blank) and not blank.hints, str(blank)
        try:
            refused = all_exercises()[key].checker(solutions.BLANK[key])
        except Problems as e:
            refused = e.problems
        assert refused, "the notebook's template passes as it is"

    right = solutions.solve(key)
    try:
        result = check(key, right)
        assert result.ok, result.problems
    finally:
        stopped(right)
    if key.startswith("engines-"):  # Podman's cgroups are not the runtime's: the leak guard does not see them
        assert not engines.cgroup_dirs(engines.cgroup_parent("podman")), "the checker left Podman's cgroups"


def test_a_finished_container_is_not_accepted(image):
    box = Container.start(ContainerSpec(IMAGE, ["true"], hostname="lab", memory="48M"))
    box.wait(10)
    result = check("cgroups-lab-48m", box)
    assert not result.ok and "not running" in result.problems[0]


def test_a_wrong_type_gets_advice_not_a_traceback():
    result = check("cgroups-lab-48m", "a string")
    assert not result.ok and "expected a running Container" in result.problems[0]


# An answer every checker refuses at once, without starting a container: not a value, a container or a function.
NOT_AN_ANSWER = object()


@pytest.mark.parametrize("key", sorted(all_exercises()))
def test_hints_come_one_failed_check_at_a_time(key):
    hints = all_exercises()[key].hints
    nothing = check(key, None)
    assert nothing.hints == () and "hint" not in str(nothing), "no hint before any attempt"
    again = check(key, None)
    assert again.hints == (), "nothing to check does not count as an attempt"

    first = check(key, NOT_AN_ANSWER)
    assert not first.ok and first.hints == hints[:1]
    assert "hint 1: " + hints[0] in str(first) and "hint 2" not in str(first)
    assert MORE_HINTS in str(first) and MORE_HINTS in first._repr_html_()

    second = check(key, NOT_AN_ANSWER)
    assert second.hints == hints[:2]
    assert "hint 1: " in str(second) and "hint 2: " + hints[1] in str(second)
    assert "hint 2:" in second._repr_html_()
    later = check(key, NOT_AN_ANSWER)
    assert later.hints[:2] == hints[:2]


def test_a_solved_check_starts_the_hints_again():
    key = "welcome-pid-namespace"  # its solution is a value: no container needed
    check(key, NOT_AN_ANSWER), check(key, NOT_AN_ANSWER)
    solved = check(key, solutions.solve(key))
    assert solved.ok and "hint" not in str(solved)
    assert check(key, NOT_AN_ANSWER).hints == all_exercises()[key].hints[:1]


def test_hints_are_counted_per_exercise():
    check("welcome-pid-namespace", NOT_AN_ANSWER)
    assert len(check("welcome-memory-cgroup", NOT_AN_ANSWER).hints) == 1


def code_lines(function) -> set[str]:
    """The solution's lines of code, without comments: what a hint must not quote."""
    lines = (line.split("#")[0].strip() for line in source_code.getsource(function).splitlines())
    return {line for line in lines if len(line) >= 16 and not line.startswith(("def ", '"""'))}


@pytest.mark.parametrize("key", sorted(all_exercises()))
def test_hints_nudge_then_name_the_interface_without_the_solution(key):
    hints = all_exercises()[key].hints
    assert len(hints) >= 2 and all(hint.strip() for hint in hints)
    assert len(set(hints)) == len(hints), "each hint says something new"
    quoted = {line for line in code_lines(solutions.SOLVERS[key]) for hint in hints if line in hint}
    assert not quoted, f"a hint quotes the solution: {quoted}"
