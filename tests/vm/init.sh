#!/bin/busybox sh
# The VM's init, in two stages (see harness.py for the host's side).
#
# stage 1, PID 1 in the initramfs: load the modules the kernel lacks (virtio, 9p, overlay),
#   mount the guest's root (9p, read-only) under a tmpfs overlay so the guest can write anywhere
#   without touching the host, then switch_root into it. Containers pivot_root, which the
#   initramfs itself (rootfs) cannot be, so the tests must not run from it.
# stage 2, PID 1 in the overlay: the set-up a learner's machine has under systemd (/ rshared,
#   cgroup2 alone at /sys/fs/cgroup, the tests in a leaf of a delegated cgroup), run pytest,
#   leave its exit status and JUnit XML on the results share, power off.
# Any other failing step ends init, and so the VM (panic=-1, -no-reboot), with its error in the log.
set -e

if [ "$1" != stage2 ]; then
    /bin/busybox --install -s /bin
    export PATH=/bin
    mount -t proc proc /proc
    mount -t sysfs sys /sys
    mount -t devtmpfs dev /dev
    for module in /modules/*.ko; do insmod "$module"; done

    nine_p="trans=virtio,version=9p2000.L,msize=512000"
    mkdir -p /lower /upper /newroot
    # cache=loose: the share is read-only and only read during a run, so caching is safe and far faster.
    mount -t 9p -o "ro,cache=loose,$nine_p" root /lower
    mount -t tmpfs -o mode=755 upper /upper
    mkdir /upper/data /upper/work
    mount -t overlay -o lowerdir=/lower,upperdir=/upper/data,workdir=/upper/work overlay /newroot
    # A fresh /run, as at boot: the host's container state must not show through. (Not /tmp: the
    # checkout under test may live there, as a CI clone can.)
    mount -t tmpfs -o mode=755 run /newroot/run
    mkdir /newroot/run/vm
    mount -t 9p -o "$nine_p" results /newroot/run/vm
    cp /init /newroot/run/vm-init
    cp /bin/busybox /newroot/run/busybox
    for fs in dev proc sys; do mount --move "/$fs" "/newroot/$fs"; done
    exec switch_root /newroot /run/busybox sh /run/vm-init stage2
fi

bb=/run/busybox
$bb mount --make-rshared /  # as systemd does: mounts propagate unless a namespace says otherwise
$bb mkdir -p /dev/pts /dev/shm
$bb mount -t devpts devpts /dev/pts
$bb mount -t tmpfs -o mode=1777 shm /dev/shm
$bb mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup  # systemd's options
$bb hostname lab-vm
$bb ip link set lo up  # Jupyter kernels talk to their client over 127.0.0.1
# No network card, but an address on a network other than the lab's, as a machine's uplink has:
# lesson 04 pings it from a container, through the default route.
$bb ip link add uplink0 type dummy
$bb ip addr add 192.0.2.10/24 dev uplink0
$bb ip link set uplink0 up

# Every controller enabled for the root's children, as systemd does for the slices above a
# Delegate=yes service. lab.service's own subtree_control stays empty: enabling controllers
# there is the runtime's job (its containers go in lab.service/minicontainer/NAME).
cd /sys/fs/cgroup
for controller in $($bb cat cgroup.controllers); do echo "+$controller" > cgroup.subtree_control; done
$bb mkdir lab.service lab.service/main

. /run/vm/env  # REPO, PYTHON, CHECKOUT, SECURITYFS, DEADLINE and the pytest arguments, written by the host
# securityfs, as systemd mounts it, for a guest that has AppArmor's tools: with it mounted, Docker and Podman see
# AppArmor on and need its parser to load their profiles (Docker refuses to run without it), which a root
# without them (this machine's own, in the cgroup v2 VM) does not have.
[ -z "$SECURITYFS" ] || $bb mount -t securityfs securityfs /sys/kernel/security
# /tmp on tmpfs, as Debian 13 has it: on the overlay / a rootless container's state dir
# (/tmp/minicontainer-UID) could not hold its own overlay's upper layer, which no machine of a
# learner's has. A checkout under /tmp (a CI clone can be) is bound back in at its path.
$bb mkdir -p /run/vm-old-tmp
$bb mount --bind /tmp /run/vm-old-tmp
# Private, or the tmpfs below would propagate onto it too: the bind is a peer of the shared /.
$bb mount --make-private /run/vm-old-tmp
$bb mount -t tmpfs -o mode=1777 tmp /tmp
if [ -n "$CHECKOUT" ]; then
    # The checkout is a share of its own (the root is not the host's /): at its host path, under an
    # overlay as the root is, so what the tests write there stays in the guest.
    $bb mkdir -p /run/vm-checkout/lower /run/vm-checkout/data /run/vm-checkout/work "$REPO"
    $bb mount -t 9p -o ro,cache=loose,trans=virtio,version=9p2000.L,msize=512000 checkout /run/vm-checkout/lower
    $bb mount -t overlay -o lowerdir=/run/vm-checkout/lower,upperdir=/run/vm-checkout/data,workdir=/run/vm-checkout/work \
        checkout "$REPO"
else
    case "$REPO" in /tmp/*) $bb mkdir -p "$REPO"; $bb mount --bind "/run/vm-old-tmp/${REPO#/tmp/}" "$REPO";; esac
fi
export HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 TERM=dumb
# Here the lessons run once each, under nbval; on the host the twice-in-one-kernel test runs them instead.
export MINICONTAINER_NBVAL=1
# Tests that change the kernel's own policy (an AppArmor profile) run only where the kernel is the VM's.
export MINICONTAINER_IN_TEST_VM=1
cd "$REPO"
# The guest's venv has the project's dependencies but not the project: the checkout goes on its path as an
# editable install puts it (a .pth file), for every interpreter (Jupyter's kernels, the CLI's helpers).
[ -z "$CHECKOUT" ] || "$PYTHON" -c 'import site, sys; open(site.getsitepackages()[0] + "/minicontainer-checkout.pth", "w").write(sys.argv[1] + "\n")' "$REPO"
echo "vm init: $($bb uname -m), Linux $($bb uname -r), up $($bb cut -d" " -f1 /proc/uptime) s, running pytest $*"
# The subshell moves itself ("0": the writer) into the leaf, then becomes pytest. Before the host's
# timeout kills the VM, SIGINT stops pytest, which still writes the results of the tests that ran.
status=0
(echo 0 > /sys/fs/cgroup/lab.service/main/cgroup.procs &&
    exec $bb timeout -s INT "$DEADLINE" "$PYTHON" -m pytest --junitxml=/run/vm/junit.xml "$@") || status=$?
echo $status > /run/vm/status
$bb sync
$bb poweroff -f
