"""An interactive terminal for a container: a new pseudo-terminal, relayed to the user's.

The container cannot share the user's terminal as its controlling terminal (that
belongs to the user's shell session), and without one a shell has no job control
and Ctrl-C never reaches it. So, as `docker run -t` does: the container gets the
slave side of a fresh pty as its stdio and controlling terminal (setsid +
TIOCSCTTY in its init), and the CLI copies bytes between the user's terminal, put
in raw mode, and the master side.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import struct
import termios
import tty


def open_pty(like_fd: int) -> tuple[int, int]:
    """A pty pair whose window size matches the user's terminal."""
    master, slave = os.openpty()
    copy_window_size(like_fd, master)
    return master, slave


def copy_window_size(from_fd: int, to_fd: int) -> None:
    size = fcntl.ioctl(from_fd, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    fcntl.ioctl(to_fd, termios.TIOCSWINSZ, size)


TIOCGPTN, TIOCSPTLCK = 0x80045430, 0x40045431  # the pty's number; its lock (new ptys start locked)


def open_pty_in(devpts: str) -> tuple[int, int, str]:
    """A pty pair from one devpts instance (the container's own, so that the slave is /dev/pts/N in it):
    (master, slave, the slave's path)."""
    master = os.open(os.path.join(devpts, "ptmx"), os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
    number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, struct.pack("I", 0)))[0]
    path = os.path.join(devpts, str(number))
    return master, os.open(path, os.O_RDWR | os.O_NOCTTY), path


def send_console(sock_fd: int, master: int) -> None:
    """OCI's console socket: the pty's master side, to the engine (conmon), which keeps the terminal."""
    import socket
    with socket.socket(fileno=sock_fd) as sock:
        socket.send_fds(sock, [b"/dev/ptmx"], [master])


def take_controlling_terminal(fd: int = 0) -> None:
    """In the container's init: a new session, with this pty slave as its controlling terminal."""
    os.setsid()
    fcntl.ioctl(fd, termios.TIOCSCTTY, 0)


def relay(master: int, user_in: int = 0, user_out: int = 1) -> None:
    """Copy user input to the pty and its output back until the container side closes it."""
    saved = termios.tcgetattr(user_in)
    tty.setraw(user_in)
    previous = signal.signal(signal.SIGWINCH, lambda *_: copy_window_size(user_in, master))
    reading_input = True
    try:
        while True:
            ready = select.select([master] + ([user_in] if reading_input else []), [], [])[0]
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError as e:
                    if e.errno == errno.EIO:  # every slave fd is closed: the container is gone
                        break
                    raise
                if not data:
                    break
                os.write(user_out, data)
            if user_in in ready:
                data = os.read(user_in, 65536)
                if data:
                    os.write(master, data)
                else:
                    reading_input = False
    finally:
        termios.tcsetattr(user_in, termios.TCSADRAIN, saved)
        signal.signal(signal.SIGWINCH, previous)
