"""A small message channel between the start sequence's processes: JSON lines on a Unix socket,
each one message of messages.py.

EOF means the other side is gone (exited, crashed or killed): the helper relies on
that to notice its caller's death, and the init's socket closing on exec (it is
close-on-exec) tells the helper that exec succeeded.
"""

from __future__ import annotations

import json
import select
import socket

from ..errors import LabError
from . import messages


class Channel:
    def __init__(self, sock: socket.socket, unread: bytes = b""):
        self.sock = sock
        self._buffer = unread  # received, not yet handed out as a message

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        a, b = socket.socketpair()  # close-on-exec, like every socket Python makes
        return cls(a), cls(b)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, message) -> bool:
        """Send one message (a messages.py dataclass); False if the other side is gone."""
        try:
            self.sock.sendall(json.dumps(messages.encode(message)).encode() + b"\n")
            return True
        except (BrokenPipeError, ConnectionResetError, OSError):
            return False

    def send_error(self, error: LabError) -> bool:
        return self.send(messages.Error.of(error))

    def ready(self, timeout: float | None = 0) -> bool:
        return b"\n" in self._buffer or bool(select.select([self.sock], [], [], timeout)[0])

    def recv(self, timeout: float | None = None):
        """The next message, or None at EOF. Raises TimeoutError if none arrives in time."""
        while b"\n" not in self._buffer:
            if timeout is not None and not select.select([self.sock], [], [], timeout)[0]:
                raise TimeoutError
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, OSError):
                chunk = b""
            if not chunk:
                return None
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return messages.decode(json.loads(line))

    def unread(self) -> bytes:
        """What has been received but not yet returned by recv (for whoever reads this socket next)."""
        return self._buffer

    def close(self) -> None:
        self.sock.close()
