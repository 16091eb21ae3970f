#!/bin/sh
# Makes a guest's Debian root whole, inside that guest (harness.py's DebianRootGuest.build boots it with the
# root writable and qemu's user-mode network; init.sh runs this). debootstrap's second stage must run on the
# root's own architecture, which is why it is here and not on the host. Then a venv with the project's
# Python dependencies for this architecture, pinned by constraints.txt. The host marks the root ready only
# if this exits 0. Arguments: the requirements (from pyproject.toml); VENV from the env file.
set -eu
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8
export DEBIAN_FRONTEND=noninteractive
# The kernel package's hook then makes no initramfs of its own (the harness boots with its own): under TCG
# over 9p, mkinitramfs copying every module one process at a time had not finished after 25 minutes.
export INITRD=No
step() { echo "prepare: $* (up $(cut -d" " -f1 /proc/uptime) s)"; }

step "debootstrap --second-stage"
# container=lxc: debootstrap then skips its check that a device node made on the target can be opened. On
# this 9p root it cannot (QEMU refuses to open special files through 9p), and the guest never needs one
# there: its /dev is a devtmpfs.
if ! container=lxc /debootstrap/debootstrap --second-stage; then
    tail -n 40 /debootstrap/debootstrap.log 2>/dev/null || true
    exit 1
fi
# The second stage unmounts what it mounted for itself, /proc among them.
[ -e /proc/self ] || mount -t proc proc /proc
echo "nameserver 10.0.2.3" > /etc/resolv.conf  # qemu's user-mode DNS, for pip
step "venv $VENV"
python3 -m venv "$VENV"
pip="$VENV/bin/pip --disable-pip-version-check --no-cache-dir"
$pip install -q -c /run/vm/constraints.txt pip
step "pip install $*"
$pip install -q -c /run/vm/constraints.txt "$@"
"$VENV/bin/python" -c 'import pyroute2, pytest, nbval, jupyterlab, ipykernel; print("prepare: imports fine")'
apt-get clean
rm -f /etc/resolv.conf
step "done"
