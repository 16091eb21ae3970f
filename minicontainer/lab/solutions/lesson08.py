"""Solutions to the exercises of notebooks/08-real-stack.ipynb, and a named wrong attempt for each."""

from __future__ import annotations


def engines_own_hook():
    return """#!/bin/sh
# stdin: the container's state, as JSON; "pid" is its PID 1, as the host numbers it.
pid=$(sed -n 's/.*"pid": *\\([0-9]*\\).*/\\1/p')
# In the host's namespaces: the pair, its far end put straight into PID 1's network namespace.
ip link add "lab8-$pid" type veth peer name eth0 netns "$pid"
nsenter --target "$pid" --net ip address add 10.88.8.2/24 dev eth0
nsenter --target "$pid" --net ip link set eth0 up
"""


def never_up():
    """The pair and the address, but eth0 left down."""
    return engines_own_hook().replace('nsenter --target "$pid" --net ip link set eth0 up\n', "")


SOLVERS = {
    "engines-own-hook": engines_own_hook,
}

WRONG = {
    "engines-own-hook": (never_up, "eth0 is DOWN"),
}
