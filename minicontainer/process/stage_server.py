"""The stage's server: a container under construction, whose steps run only when the caller (a notebook's
Stage, stage.py) asks, with the learner's own functions in PID 1 or in place of a step. The states it
serves are staged (between steps) and, after Start, running; a failed step leaves the stage as it was.
"""

from __future__ import annotations

from ..errors import LabError
from ..state import Status
from . import learner, messages, steps
from .messages import unexpected
from .sequence import NOT_REPLACEABLE, Sequence, StageEnded


class StageServer(Sequence):
    """Serves a Stage: Advance, RunFunction (in PID 1, or in place of a step), Start and Stop."""

    def staged(self) -> bool:
        """Serve a staged container. True once it has been started, False if it ended."""
        self.write_state(Status.STAGED)
        self.caller.send(messages.Staged([[s.name, s.process, s.what] for s in steps.plan(self.spec)]))
        while True:
            message = self.caller.recv()
            try:
                if isinstance(message, messages.Advance):
                    failed = None
                    try:
                        if message.only:
                            self.run_out_of_order(message.only)
                        else:
                            self.run_until(message.until)
                    except LabError as e:  # the steps before it stay done, and the stage says so
                        failed = e.to_dict()
                    self.write_state(Status.STAGED)
                    self.caller.send(messages.Paused(self.ctx.done, self.init_pid, self.cgroup.dirs, failed,
                                                    self.intermediate_pid))
                elif isinstance(message, messages.RunFunction) and message.instead_of:
                    self.caller.send(self.replace_step(message))
                elif isinstance(message, messages.RunFunction):
                    self.caller.send(self.run_function(message))
                elif isinstance(message, messages.Start):
                    try:
                        self.exec_command()
                    except (LabError, StageEnded) as e:  # no stage to go back to: it ends here
                        error = e if isinstance(e, LabError) else LabError(str(e), "it was killed", "make a new stage")
                        self.caller.send(messages.Error.of(error, ended=True))
                        return False
                    return True
                elif message is None or isinstance(message, messages.Stop):  # None: the caller is gone
                    return False
                else:
                    raise unexpected(message, "Advance, RunFunction, Start or Stop")
            except LabError as e:  # a failed step leaves the stage as it was: the learner may try again
                self.caller.send_error(e)
            except StageEnded as e:
                self.caller.send(messages.Error.of(LabError(str(e), "it was killed, or exited (a learner function "
                                                            "that calls exit?)", "the stage was torn down: make a "
                                                            "new one"), ended=True))
                return False

    def run_function(self, message: messages.RunFunction) -> messages.FunctionResult:
        needed = [n for n in ("fork PID 1", "mounts private") if n in {s.name for s in steps.plan(self.spec)}]
        missing = [n for n in needed if n not in self.ctx.done]
        if self.child is None or missing:
            raise LabError(f"{message.name}() cannot run yet", f"your functions run in PID 1 once its mounts are "
                           f"private, so they cannot change the host's; missing: {', '.join(missing)}",
                           f"stage.run_until({missing[-1]!r}) first" if missing else "make a new stage")
        return self.ask_child(message)

    def replace_step(self, message: messages.RunFunction) -> messages.FunctionResult:
        """A learner's function in place of the next step, in that step's own process; on success the
        step counts as done and the runtime's own version never runs."""
        name = message.instead_of
        step = self.check_can_run(name)
        if step.run is None or name in NOT_REPLACEABLE:
            replaceable = [s.name for s in self.remaining() if s.run is not None and s.name not in NOT_REPLACEABLE]
            raise LabError(f"step {name!r} cannot be replaced", "the helper's own machinery does it (a fork, or "
                           "bookkeeping it needs to clean up after)", f"replace one of: {', '.join(replaceable)}")
        upcoming = next(s for s in self.remaining() if s.name != "exec")
        if upcoming.name != name:
            order = [s.name for s in steps.plan(self.spec)]
            before = order[order.index(name) - 1]
            raise LabError(f"step {name!r} is not the next step ({upcoming.name!r} is)", "a step you write runs in its "
                           "own place in the list, after the ones before it", f"stage.run_until({before!r}) first")
        if step.process == steps.HELPER:
            self.before_step(step)
            reply = learner.run(self.ctx, message)
        elif self.child is None or step.process != self.child_process:
            raise LabError(f"step {name!r} runs in the {step.process}, which is not there now", "its process is "
                           "not forked yet, or has handed over to PID 1", "run the steps before it first")
        else:
            reply = self.ask_child(message)
            if not reply.error:
                self.ctx.done.append(name)
        if not reply.error:
            self.say(name, f"your function {message.name}() instead of the runtime's", step.process)
        return reply

