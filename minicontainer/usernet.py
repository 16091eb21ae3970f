"""User-mode networking for rootless containers, through slirp4netns (network="slirp4netns").

A user without root cannot make a veth pair or a NAT rule in the host's network namespace: both need
CAP_NET_ADMIN there. slirp4netns (Debian's package of that name, as rootless Podman uses it) needs none of the
host's: it enters the container's user and network namespaces, opens a TAP device there (tap0), and relays
what the container sends through ordinary sockets of its own on the host, as the user. So a connection from
the container leaves from the host's address like any program's, and a published port is a socket slirp4netns
listens on.

Inside, as slirp4netns sets it up (--configure): tap0 with 10.0.2.100/24, a default route via 10.0.2.2
(slirp4netns itself), DNS at 10.0.2.3. With --disable-host-loopback, 10.0.2.2 does not lead to the host's
127.0.0.1: services bound there stay out of reach, as they would from another machine.

One slirp4netns per container, the helper's child. It exits when the read end of its --exit-fd pipe sees
EOF: the helper holds the write end, hands it over with the container (supervisor.py), and closes it in
cleanup; if every holder is killed, the kernel closes it all the same.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass

from .errors import LabError

ADDRESS, GATEWAY, DNS = "10.0.2.100", "10.0.2.2", "10.0.2.3"
DEVICE = "tap0"
MTU = 65520  # slirp4netns's largest: fewer, larger packets through the relay


@dataclass
class Slirp:
    pid: int
    pidfd: int
    exit_fd: int       # our end of its --exit-fd pipe: closing it (in whoever holds it last) ends slirp4netns
    api_socket: str    # where it takes port forwards (add_hostfwd)


def start(init_pid: int, state_dir: str, publish: list, own_user_namespace: bool = True) -> Slirp:
    """Start slirp4netns on init_pid's network namespace, wait until tap0 is configured, forward the ports.
    In a container of its own user namespace, slirp4netns enters that first: the rights to the network
    namespace are held there."""
    program = shutil.which("slirp4netns")
    if program is None:
        raise LabError("slirp4netns is not installed", "network='slirp4netns' relays the container's packets "
                       "through it", "apt-get install slirp4netns (the lab VM and class host have it)")
    ready_read, ready_write = os.pipe()
    exit_read, exit_write = os.pipe()
    api_socket = os.path.join(state_dir, "slirp4netns.sock")
    log_path = os.path.join(state_dir, "slirp4netns.log")
    command = [program, "--configure", f"--mtu={MTU}", "--disable-host-loopback", f"--ready-fd={ready_write}",
               f"--exit-fd={exit_read}", f"--api-socket={api_socket}",
               *([f"--userns-path=/proc/{init_pid}/ns/user"] if own_user_namespace else []), str(init_pid), DEVICE]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, pass_fds=(ready_write, exit_read), stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    os.close(ready_write)
    os.close(exit_read)
    os.set_inheritable(exit_write, False)
    slirp = Slirp(process.pid, os.pidfd_open(process.pid), exit_write, api_socket)
    try:
        ready = select.select([ready_read], [], [], 20)[0] and os.read(ready_read, 1) == b"1"
        if not ready:
            raise _failed(log_path)
        for port in publish:
            forward_port(slirp, *port)
    except BaseException:
        stop(slirp)
        raise
    finally:
        os.close(ready_read)
    return slirp


def _failed(log_path: str) -> LabError:
    with open(log_path) as f:
        said = f.read().strip().splitlines()
    last = next((line for line in reversed(said) if "Permission denied" in line or "failed" in line),
                said[-1] if said else "nothing")
    if not os.path.exists("/dev/net/tun"):
        return LabError("slirp4netns needs /dev/net/tun, and this machine has none", "the tun module is not loaded "
                        "(a distribution's udev makes the node exist; a minimal system may not)",
                        "as root: modprobe tun")
    if "/dev/net/tun" in " ".join(said):
        return LabError(f"slirp4netns could not open /dev/net/tun: {last}", "on this machine the TUN device is "
                        "not open to every user (udev makes it mode 0666 on most distributions)",
                        "ask the machine's admin to run: chmod 0666 /dev/net/tun (and keep udev's rule for it)")
    return LabError(f"slirp4netns did not set up the container's network: {last}", "see its log, "
                    f"{log_path}, while the container exists", "use network='none', or report the log")


def forward_port(slirp: Slirp, host_ip: str, host_port: int, container_port: int, proto: str = "tcp") -> None:
    """Ask slirp4netns (its API socket) to listen on host_ip:host_port and relay to the container's port."""
    request = {"execute": "add_hostfwd", "arguments": {"proto": proto, "host_addr": host_ip,
                                                        "host_port": host_port, "guest_port": container_port}}
    with socket.socket(socket.AF_UNIX) as api:
        api.settimeout(10)
        api.connect(slirp.api_socket)
        api.sendall(json.dumps(request).encode())
        api.shutdown(socket.SHUT_WR)
        answer = json.loads(api.recv(65536) or b"{}")
    if "error" in answer or "return" not in answer:
        raise LabError(f"cannot publish {host_ip}:{host_port} -> {container_port}/{proto}: "
                       f"{answer.get('error', answer)}", "the host port is taken, or below 1024 (a user may not "
                       "bind those)", "publish another host port")


def stop(slirp: Slirp) -> None:
    """Close our end of its exit pipe (it exits), and make sure it has: SIGKILL after 5 s."""
    os.close(slirp.exit_fd)
    if not select.select([slirp.pidfd], [], [], 5)[0]:
        signal.pidfd_send_signal(slirp.pidfd, signal.SIGKILL)
        select.select([slirp.pidfd], [], [], 5)
    os.close(slirp.pidfd)
    try:
        os.waitpid(slirp.pid, os.WNOHANG)  # ours to reap while we are its parent; a subreaper's after a hand-over
    except ChildProcessError:
        pass
