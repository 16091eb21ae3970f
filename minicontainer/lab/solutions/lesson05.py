"""Solutions to the exercises of notebooks/05-security.ipynb, a named wrong attempt for each, and the
notebook's blank templates.

Each answer is a step function, sent into the container's PID 1 and run there with the runtime's
wrappers (kernel, security, os...) as globals, as a learner's is: hence the noqa on those names."""

from __future__ import annotations


def my_bounding_set(ctx):
    kept = ctx.spec.security.kept
    last = int(open("/proc/sys/kernel/cap_last_cap").read())
    for bit in range(last + 1):  # a bit this list has no name for is never kept
        if bit >= len(kernel.CAPABILITIES) or kernel.CAPABILITIES[bit] not in kept:  # noqa: F821
            kernel.prctl(kernel.PR_CAPBSET_DROP, bit)  # noqa: F821


def my_no_new_privs(ctx):
    kernel.prctl(kernel.PR_SET_NO_NEW_PRIVS, 1)  # noqa: F821


def only_permitted_and_effective(ctx):
    """Cuts the sets the process holds now, not the bounding set: the command's execve as root takes
    them all back."""
    security.set_capabilities(ctx.spec.security.kept)  # noqa: F821


def ambient_cleared_instead(ctx):
    """Clears the ambient set, which a setuid-root program never needed."""
    kernel.prctl(kernel.PR_CAP_AMBIENT, kernel.PR_CAP_AMBIENT_CLEAR_ALL)  # noqa: F821


def blank_bounding_set(ctx):   # 5.1: runs in PID 1, as root, before seccomp and capset
    pass


def blank_no_new_privs(ctx):   # 5.2: runs in PID 1, as uid 1000, just before the command
    pass


SOLVERS = {
    "security-bounding-set": my_bounding_set,
    "security-no-new-privs": my_no_new_privs,
}

WRONG = {
    "security-bounding-set": (lambda: only_permitted_and_effective, "gave them back from the bounding set"),
    "security-no-new-privs": (lambda: ambient_cleared_instead, "still honoured the setuid bit"),
}

BLANK = {
    "security-bounding-set": blank_bounding_set,
    "security-no-new-privs": blank_no_new_privs,
}
