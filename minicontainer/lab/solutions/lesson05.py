"""Solutions to the exercises of notebooks/05-security.ipynb, and a named wrong attempt for each."""

from __future__ import annotations

from ...container import Container
from ...rootfs import DEFAULT_ROOTFS as IMAGE
from ...security import Security
from ...spec import ContainerSpec


def security_only_net_raw():
    return Container.start(ContainerSpec(IMAGE, ["sleep", "600"], security=Security(capabilities=["net_raw"])))


def security_guarded_user():
    return Container.start(ContainerSpec(IMAGE, ["sleep", "600"], user="1000"))


def box(rootfs=IMAGE, command=("sleep", "600"), **fields) -> Container:
    """A running container for a wrong attempt."""
    return Container.start(ContainerSpec(rootfs, list(command), **fields))


SOLVERS = {
    "security-only-net-raw": security_only_net_raw,
    "security-guarded-user": security_guarded_user,
}

WRONG = {
    "security-only-net-raw": (lambda: box(), "also holds"),
    "security-guarded-user": (lambda: box(security=Security(no_new_privs=False), user="1000"), "no_new_privs is off"),
}
