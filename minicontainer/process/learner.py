"""Functions a learner wrote in a notebook cell, run in a container's process (init, the
intermediate or the helper) by a staged container: `stage.call(f)` and `stage.replace(step, f)`.

The function arrives as source text and runs here, in the namespaces and root built so far, with
the runtime's kernel wrappers as globals and the step Context if it takes an argument. Its return
value goes back as JSON (or its repr); an error names the function, the line and the call that
failed, and leaves the process as it was, so the learner can fix it and try again.
"""

from __future__ import annotations

import errno
import json
import os
import traceback

from .. import inspect as inspect_module
from .. import kernel, namespaces, rootfs, security
from ..errors import LabError
from . import messages, steps


def run(ctx: steps.Context, message: messages.RunFunction) -> messages.FunctionResult:
    """Run it; on success in place of a step (message.instead_of), that step counts as done here."""
    where = f"<your function {message.name}>"
    scope = {"__name__": "learner", "os": os, "kernel": kernel, "namespaces": namespaces, "rootfs": rootfs,
             "security": security, "inspect": inspect_module, "LabError": LabError}
    try:
        exec(compile(message.source, where, "exec"), scope)
        function = scope[message.name]
        value = function(ctx) if function.__code__.co_argcount else function()
    except BaseException as e:  # noqa: BLE001  every learner mistake becomes a message
        return messages.FunctionResult(error=learner_error(message, where, e).to_dict())
    if message.instead_of:
        ctx.done.append(message.instead_of)  # e.g. ctx.root is "/" once pivot_root is done
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        value = repr(value)
    return messages.FunctionResult(value=value)


def learner_error(message: messages.RunFunction, where: str, error: BaseException) -> LabError:
    frames = [f for f in traceback.extract_tb(error.__traceback__) if f.filename == where]
    lines = message.source.splitlines()
    line = ""
    if frames and 0 < frames[-1].lineno <= len(lines):
        line = f" at line {frames[-1].lineno}: {lines[frames[-1].lineno - 1].strip()}"
    name = message.name
    if isinstance(error, LabError):
        return LabError(f"{name}(){line}: {error.what}", error.cause, error.fix, step=name)
    if isinstance(error, ImportError):
        return LabError(f"{name}(){line}: {error}", "after pivot_root the host's Python files are out of "
                        "reach, and the image has none", "use the modules your function is given (os, kernel, "
                        "namespaces, rootfs, security, inspect), or import before pivot_root", step=name)
    if isinstance(error, OSError):
        call = f"{error.strerror} ({errno_name(error.errno)})" + (f" on {error.filename}" if error.filename else "")
        return LabError(f"{name}(){line}: the kernel refused the call: {call}",
                        "see the man page of the call on that line", "fix the call; the stage is still usable",
                        step=name)
    if isinstance(error, NotImplementedError) or (isinstance(error, TypeError) and "Ellipsis" in str(error)):
        return LabError(f"{name}() is not written yet", "its body is still the template",
                        "write the steps the hints describe, then run the cell again", step=name)
    return LabError(f"{name}(){line} raised {type(error).__name__}: {error}", "a bug in your function",
                    "fix it and run it again; the stage is still usable", step=name)


def errno_name(number: int | None) -> str:
    return errno.errorcode.get(number or 0, str(number))
