"""LabError: the one error type the lab raises on purpose.

Every message says three things: what failed, the likely cause, and what to do.
A learner should never have to decode a bare "Operation not permitted".
"""

from __future__ import annotations


class LabError(Exception):
    def __init__(self, what: str, cause: str = "", fix: str = "", step: str = "", exit_code: int = 125):
        self.what = what
        self.cause = cause
        self.fix = fix
        self.step = step
        self.exit_code = exit_code  # the CLI's: 125 the runtime refused, 126 not executable, 127 not found
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [f"[{self.step}] {self.what}" if self.step else self.what]
        if self.cause:
            parts.append(f"  likely cause: {self.cause}")
        if self.fix:
            parts.append(f"  what to do:   {self.fix}")
        return "\n".join(parts)

    def to_dict(self) -> dict:
        return {"what": self.what, "cause": self.cause, "fix": self.fix, "step": self.step,
                "exit_code": self.exit_code}

    @classmethod
    def from_dict(cls, data: dict) -> LabError:
        return cls(data.get("what", "unknown error"), data.get("cause", ""),
                   data.get("fix", ""), data.get("step", ""), data.get("exit_code", 125))
