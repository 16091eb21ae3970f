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


def my_binds(ctx):
    for source, target, _read_only in ctx.spec.binds:
        path = ctx.root + target
        open(path, "a").close()  # a file to bind a file onto
        kernel.mount(source, path, None, kernel.MS_BIND)  # noqa: F821
        # A new bind ignores the other flags: they take a remount of the bind.
        flags = kernel.MS_REMOUNT | kernel.MS_BIND | kernel.MS_RDONLY | kernel.MS_NOSUID  # noqa: F821
        kernel.mount(None, path, None, flags)  # noqa: F821


def only_permitted_and_effective(ctx):
    """Cuts the sets the process holds now, not the bounding set: the command's execve as root takes
    them all back."""
    security.set_capabilities(ctx.spec.security.kept)  # noqa: F821


def flags_on_the_bind_itself(ctx):
    """Asks for nosuid and read-only in the bind's own call, which ignores them."""
    for source, target, _read_only in ctx.spec.binds:
        path = ctx.root + target
        open(path, "a").close()
        kernel.mount(source, path, None, kernel.MS_BIND | kernel.MS_RDONLY | kernel.MS_NOSUID)  # noqa: F821


def blank_bounding_set(ctx):   # 5.1: runs in PID 1, as root, before seccomp and capset
    pass


def blank_binds(ctx):   # 5.2: runs in PID 1, as root, before pivot_root
    """For each (source, target, read_only) in ctx.spec.binds: source shown at ctx.root + target, read-only,
    setuid bits ignored. A file is bound onto a file: make an empty one first (open(path, "a").close())."""
    ...


SOLVERS = {
    "security-bounding-set": my_bounding_set,
    "security-nosuid-bind": my_binds,
}

WRONG = {
    "security-bounding-set": (lambda: only_permitted_and_effective, "gave them back from the bounding set"),
    "security-nosuid-bind": (lambda: flags_on_the_bind_itself, "honours setuid bits"),
}

BLANK = {
    "security-bounding-set": blank_bounding_set,
    "security-nosuid-bind": blank_binds,
}
