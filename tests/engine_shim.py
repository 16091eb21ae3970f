"""What conmon or containerd's shim is to an OCI runtime, reduced to the part the lifecycle needs.

    python engine_shim.py OUTPUT RUNTIME... create --bundle B ID

It makes itself the subreaper of its descendants (prctl PR_SET_CHILD_SUBREAPER), runs the runtime's
`create` with its stdout and stderr going to OUTPUT (the container inherits them, so its output goes
there too, after the runtime's own messages, if any), and prints one JSON line with create's exit code.
`create` exits and leaves PID 1 behind; the kernel hands that orphan to us, not to the machine's init,
so we can reap it: one JSON line per process reaped, with its exit code, until no
descendant is left. Then it exits. Tests talk to the runtime directly for start, state, kill and delete,
as an engine does.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36


def main() -> None:
    output, runtime = sys.argv[1], sys.argv[2:]
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit("engine_shim: prctl(PR_SET_CHILD_SUBREAPER) failed")
    with open(output, "wb") as out:
        # Not a pipe: PID 1 inherits it and keeps it open long after create has exited.
        code = subprocess.run(runtime, stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=60).returncode
    print(json.dumps({"create": code}), flush=True)
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return
        print(json.dumps({"reaped": pid, "code": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    main()
