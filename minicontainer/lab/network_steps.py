"""The inside half of a container's network, run from a notebook: in a fresh process that enters the
container's network namespace (the notebook's own process never calls setns)."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict

from .. import kernel
from ..errors import LabError
from ..network import Lease, configure_inside, loopback_up
from ..process import spawn


def inside(pid: int, lease: Lease | dict | None = None) -> None:
    """From a notebook: run the inside step in a fresh process that enters pid's network namespace
    (the notebook's own process never calls setns). With a lease: configure_inside; without: lo up."""
    data = asdict(lease) if isinstance(lease, Lease) else lease
    out = spawn.run("minicontainer.lab.network_steps", str(pid), json.dumps(data), capture_output=True, text=True,
                    timeout=30)
    if out.returncode != 0:
        raise LabError(f"configuring the network inside process {pid} failed: {out.stderr.strip()[-300:]}",
                       "the process exited, or the veth end is not in its namespace yet", "check both")


if __name__ == "__main__":  # python -m minicontainer.lab.network_steps PID LEASE-JSON|null (see inside())
    kernel.setns(os.open(f"/proc/{sys.argv[1]}/ns/net", os.O_RDONLY), kernel.CLONE_NEWNET)
    lease_data = json.loads(sys.argv[2])
    configure_inside(lease_data) if lease_data else loopback_up()
