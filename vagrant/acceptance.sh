#!/usr/bin/env bash
# End-to-end acceptance of the lab VM, on a Debian 12 machine as root, with nothing from Vagrant Cloud:
#
#   sudo vagrant/acceptance.sh            (MINICONTAINER_ACCEPTANCE_REBUILD=1 rebuilds the cached box)
#   sudo MINICONTAINER_ACCEPTANCE_SUITE=trixie vagrant/acceptance.sh      (a Debian 13 guest instead of 12)
#   sudo MINICONTAINER_ACCEPTANCE_CLASS=2 vagrant/acceptance.sh    (then a class host with 2 learners on it)
#   MINICONTAINER_ACCEPTANCE_SKIP_TESTS=1: leave out the runtime tests and nbval (the class host's run alone)
#
# 1. builds a Debian 12 (or 13) libvirt box from Debian's own packages (debootstrap -> disk image -> box),
#    a systemd guest as a learner's is,
# 2. brings it up with Debian's vagrant + vagrant-libvirt (qemu/TCG when KVM is unusable), provisions it
#    with vagrant/provision.sh (the script every learner's VM runs), provisions it again (idempotence),
# 3. checks cgroup v2, the service's leaf cgroup, the token'ed URL through the forwarded port, a file
#    written in the guest showing up on the host, `minicontainer doctor`, the runtime, stage, security and
#    escape tests in the lab service's kind of cgroup, and every notebook under nbval,
# 4. tears everything down, even on failure: domain, volumes, pools, networks, firewall chains, loop
#    devices, mounts, the daemons it started.
# Each phase runs under a timeout and prints its duration. Not part of the default test command: it
# takes about 16 minutes under emulation (docs/vm.md has the phase times).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
WORK=${MINICONTAINER_ACCEPTANCE_DIR:-/var/tmp/minicontainer-acceptance}
CACHE=${MINICONTAINER_ACCEPTANCE_CACHE:-/var/cache/minicontainer/acceptance}
SUITE=${MINICONTAINER_ACCEPTANCE_SUITE:-bookworm}
case "$SUITE" in
  bookworm) RELEASE=debian12 ;;
  trixie) RELEASE=debian13 ;;
  *) echo "MINICONTAINER_ACCEPTANCE_SUITE: bookworm (Debian 12) or trixie (Debian 13), not $SUITE" >&2; exit 2 ;;
esac
BOX_FILE=$CACHE/$RELEASE-libvirt.box
BOX_NAME=minicontainer-acceptance/$RELEASE
GUEST_REPO=/home/vagrant/minicontainer
export VAGRANT_HOME=$WORK/vagrant.d           # a private box store: nothing left in ~/.vagrant.d
export VAGRANT_CWD=$WORK/repo/vagrant          # a copy of the checkout: the guest writes into it
export VAGRANT_DEFAULT_PROVIDER=libvirt
export MINICONTAINER_BOX=$BOX_NAME MINICONTAINER_BOX_VERSION=""
export MINICONTAINER_SYNC=9p                   # two-way without an NFS server (none runs here)
export MINICONTAINER_LIBVIRT_DRIVER=${MINICONTAINER_LIBVIRT_DRIVER:-qemu}  # this /dev/kvm cannot run guests
export MINICONTAINER_PORT=${MINICONTAINER_ACCEPTANCE_PORT:-18888}          # 8888 may be busy on this host
export MINICONTAINER_EXTRAS=lab,notebooks      # nbval and pytest in the guest (not the browser driver)
HOST_PACKAGES=(vagrant vagrant-libvirt libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils
               dnsmasq-base debootstrap grub-pc-bin fdisk e2fsprogs curl)

LABEL=acceptance
# shellcheck source=lib-vm.sh source-path=SCRIPTDIR
. "$HERE/lib-vm.sh"   # say, run_phase, summary, stop_phase: as nocloud-check.sh's

# --- phases (each runs as `acceptance.sh __phase NAME` under its own timeout) -----------------------

phase_prereqs() {
  [ "$(id -u)" = 0 ] || { echo "run as root"; exit 1; }
  local missing=()
  for p in "${HOST_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
  vagrant --version; vagrant plugin list
}

phase_daemons() {
  # No systemd on this machine: start libvirt's daemons by hand (teardown stops the ones we started).
  if ! virsh -c qemu:///system version >/dev/null 2>&1; then
    pgrep -x virtlogd >/dev/null || { virtlogd -d; echo virtlogd >> "$WORK/started"; }
    libvirtd -d; echo libvirtd >> "$WORK/started"
    for _ in $(seq 30); do virsh -c qemu:///system version >/dev/null 2>&1 && break; sleep 1; done
  fi
  virsh -c qemu:///system version
}

# The guest disk: one ext4 partition on an MBR disk, grub-pc, Debian's kernel, the vagrant user with
# Vagrant's well-known key (vagrant swaps in a fresh key on the first `up`).
phase_build_box() {
  local build=$WORK/build img loop part mnt uuid
  if [ -s "$BOX_FILE" ] && [ -z "${MINICONTAINER_ACCEPTANCE_REBUILD:-}" ]; then
    echo "cached: $BOX_FILE ($(du -h "$BOX_FILE" | cut -f1)); MINICONTAINER_ACCEPTANCE_REBUILD=1 rebuilds it"
    return
  fi
  img=$build/disk.raw mnt=$build/mnt
  mkdir -p "$build" "$mnt" "$CACHE"
  truncate -s 10G "$img"
  printf 'label: dos\n,,L,*\n' | sfdisk -q "$img"
  loop=$(losetup -f --show -P "$img")
  echo "$loop" > "$build/loop"
  # No udev here: the partition does not always appear by itself; ask the kernel to add it.
  blockdev --rereadpt "$loop"
  part=${loop}p1
  [ -b "$part" ] || partx -a "$loop"
  for _ in $(seq 20); do [ -b "$part" ] && break; sleep 0.5; done
  mkfs.ext4 -q -L root "$part"
  uuid=$(blkid -s UUID -o value "$part")
  mount "$part" "$mnt"
  timeout 900 debootstrap --variant=minbase \
    --include=linux-image-amd64,grub-pc,systemd-sysv,udev,dbus,kmod,openssh-server,sudo,ifupdown,isc-dhcp-client,ca-certificates,iproute2,procps \
    "$SUITE" "$mnt" http://deb.debian.org/debian
  echo minicontainer-acceptance > "$mnt/etc/hostname"
  echo "UUID=$uuid / ext4 errors=remount-ro 0 1" > "$mnt/etc/fstab"
  printf 'auto lo\niface lo inet loopback\nauto eth0\niface eth0 inet dhcp\n' > "$mnt/etc/network/interfaces"
  cat >> "$mnt/etc/default/grub" <<'EOF'
GRUB_TIMEOUT=1
GRUB_CMDLINE_LINUX="console=ttyS0 net.ifnames=0"
EOF
  chroot "$mnt" useradd -m -s /bin/bash vagrant
  echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > "$mnt/etc/sudoers.d/vagrant"
  install -d -m 700 -o 1000 -g 1000 "$mnt/home/vagrant/.ssh"
  install -m 600 -o 1000 -g 1000 "$(dirname "$(readlink -f "$(command -v vagrant)")")/../keys/vagrant.pub" \
    "$mnt/home/vagrant/.ssh/authorized_keys" 2>/dev/null ||
    install -m 600 -o 1000 -g 1000 /usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub \
      "$mnt/home/vagrant/.ssh/authorized_keys"
  echo 'UseDNS no' > "$mnt/etc/ssh/sshd_config.d/vagrant.conf"
  for d in dev proc sys; do mount --bind "/$d" "$mnt/$d"; done
  # The guest's own grub (its modules must match the grub.cfg its update-grub writes), not this host's.
  chroot "$mnt" grub-install --target=i386-pc "$loop"
  chroot "$mnt" update-grub
  # update-grub names the root by the build host's loop device; the guest boots it by UUID.
  sed -i "s|root=/dev/loop[0-9]*p1|root=UUID=$uuid|g" "$mnt/boot/grub/grub.cfg"
  grep -q "root=UUID=$uuid" "$mnt/boot/grub/grub.cfg"
  chroot "$mnt" apt-get clean
  for d in sys proc dev; do umount "$mnt/$d"; done
  umount "$mnt"
  losetup -d "$loop"; rm -f "$build/loop"
  qemu-img convert -c -O qcow2 "$img" "$build/box.img"
  printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": 10}\n' > "$build/metadata.json"
  tar -C "$build" -cf "$BOX_FILE.tmp" metadata.json box.img
  mv "$BOX_FILE.tmp" "$BOX_FILE"
  rm -f "$img" "$build/box.img"
  du -h "$BOX_FILE"
}

phase_box_add() {
  vagrant box add --force --name "$BOX_NAME" "$BOX_FILE"
}

phase_copy_repo() {
  # The checkout as git sees it (tracked and untracked, not ignored). 9p in squash mode writes as
  # libvirt's qemu user, so the copy is world-writable; it is thrown away at the end.
  rm -rf "$WORK/repo"; mkdir -p "$WORK/repo"
  git -C "$REPO" ls-files -co --exclude-standard -z | tar -C "$REPO" --null -T - -cf - | tar -C "$WORK/repo" -xf -
  chmod -R a+rwX "$WORK/repo"; chmod 755 "$WORK"
}

phase_up() { vagrant up --no-provision; }

phase_host_trust() {
  # The guest reaches PyPI the way this host does. Where the host's network inspects TLS (a company
  # or sandbox proxy), its CA is in /usr/local/share/ca-certificates: the guest must trust it too, as a
  # workshop VM behind such a proxy would. Debian's pip reads the system store. Nothing else changes.
  local crt name n=0
  for crt in /usr/local/share/ca-certificates/*.crt; do
    [ -f "$crt" ] || continue
    name=host-$(basename "$crt")
    vagrant ssh -c "sudo tee /usr/local/share/ca-certificates/$name >/dev/null" < "$crt"
    n=$((n + 1))
  done
  if [ $n -gt 0 ]; then vagrant ssh -c 'sudo update-ca-certificates >/dev/null'; fi
  echo "$n extra CA certificate(s) from this host"
}
phase_provision() { vagrant provision; }

phase_checks() {
  local token listeners
  # shellcheck disable=SC2016  # expanded in the guest, not here
  vagrant ssh -c 'set -e
    echo "cgroup fs: $(stat -fc %T /sys/fs/cgroup)"; test "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs
    systemctl is-active minicontainer-lab
    pid=$(systemctl show -p MainPID --value minicontainer-lab)
    echo "lab server cgroup: $(cat /proc/$pid/cgroup)"; grep -q "minicontainer-lab.service/lab$" /proc/$pid/cgroup
    sudo minicontainer doctor
    sudo minicontainer run --memory 32M --pids 16 --hostname acceptance -- sh -c "echo hello from \$(hostname)"
    rc=0; sudo minicontainer run --memory 32M -- sh -c "x=\$(head -c 64000000 /dev/zero | tr \"\\0\" a)" || rc=$?
    echo "a container limited to 32M that allocates 64M: exit $rc (137: the OOM killer, as it should)"
    test $rc = 137'
  token=$(vagrant ssh -c 'sudo cat /etc/minicontainer/token' | tr -d '\r\n')
  curl -fsS "http://127.0.0.1:$MINICONTAINER_PORT/api/status?token=$token"; echo
  # Host-side binding: the forward must listen on 127.0.0.1 only.
  # (Printed with echo, not `tee /dev/stderr`: reopening stderr truncates a log it is redirected to.)
  listeners=$(ss -Hltnp "sport = :$MINICONTAINER_PORT")
  echo "listening on the forwarded port: $listeners"
  [ -n "$listeners" ] || { echo "nothing listens on $MINICONTAINER_PORT"; exit 1; }
  if grep -v "127.0.0.1:$MINICONTAINER_PORT " <<<"$listeners"; then echo "listens beyond 127.0.0.1"; exit 1; fi
  # Save a file the way a learner does, through JupyterLab (its contents API, via the forward): the
  # server writes it in the guest, and it must appear in the host's checkout.
  curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/json' \
    -d '{"type": "file", "format": "text", "content": "written-in-guest"}' \
    "http://127.0.0.1:$MINICONTAINER_PORT/api/contents/work/acceptance-probe.txt?token=$token"
  grep -q written-in-guest "$WORK/repo/notebooks/work/acceptance-probe.txt"
  echo "saved through JupyterLab in the guest, found on the host: $WORK/repo/notebooks/work/acceptance-probe.txt"
  # And from a shell in the VM, as the learner's own user.
  # (A new name each time: on 9p a file then belongs to libvirt's qemu user, so a re-run could not
  # overwrite it.)
  local shell_file
  shell_file=acceptance-shell-$(date +%s).txt
  vagrant ssh -c "echo written-by-vagrant > $GUEST_REPO/notebooks/work/$shell_file"
  grep -q written-by-vagrant "$WORK/repo/notebooks/work/$shell_file"
  echo "written by the vagrant user in a shell, found on the host: $shell_file"
}

phase_runtime_tests() {
  # The runtime, the staged container, the defences and the escapes, in a delegated cgroup as the lab
  # service runs, and cgroups as systemd scopes (--systemd-cgroup, beside runc); the browser and the
  # engine tests stay on CI's host.
  vagrant ssh -c "sudo systemd-run --quiet --wait --pipe --collect -p Delegate=yes \
    -p WorkingDirectory=$GUEST_REPO -E PATH=/opt/minicontainer/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /usr/local/libexec/minicontainer/in-leaf /opt/minicontainer/venv/bin/pytest -p no:cacheprovider -q -rfEs \
    -o timeout=600 tests/unit tests/test_container.py tests/test_stage.py tests/test_security.py \
    tests/test_escapes.py tests/test_kernel.py tests/test_cgroups.py tests/test_shared_helper.py \
    tests/test_systemd_cgroup.py"
}

phase_nbval() {
  # Like the lab service: a transient unit with Delegate=yes, the run in its leaf cgroup.
  vagrant ssh -c "sudo systemd-run --quiet --wait --pipe --collect -p Delegate=yes \
    -p WorkingDirectory=$GUEST_REPO -E PATH=/opt/minicontainer/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    /usr/local/libexec/minicontainer/in-leaf /opt/minicontainer/venv/bin/pytest -p no:cacheprovider \
    -o timeout=1200 --nbval-lax --nbval-cell-timeout=900 notebooks/"
}

phase_class_host() {
  # The class host, from the same provisioning, on the box the lab VM phases just set up.
  vagrant ssh -c "sudo $GUEST_REPO/vagrant/class-host.sh $MINICONTAINER_ACCEPTANCE_CLASS http://127.0.0.1:8000/"
}

phase_class_checks() {
  # Each learner, through the hub as a browser would be (the login card's password, the server started by the
  # hub, code run in a kernel over its websocket): who the server runs as and in which cgroup, the unit's
  # limits, a rootless container of theirs held by its memory limit, and what they cannot reach of another's.
  # shellcheck disable=SC2016  # expanded in the guest, not here
  vagrant ssh -c 'set -e
    hub=http://127.0.0.1:8000/; py=/opt/minicontainer/venv/bin/python
    client() { sudo "$py" -m minicontainer.classroom.client "$hub" "$@"; }
    cards=$(sudo cat /etc/minicontainer/class/passwords)
    first=$(echo "$cards" | head -1); second=$(echo "$cards" | sed -n 2p)
    for card in $cards; do
      name=${card%%:*}; password=${card#*:}
      client "$name" "$password" "import os, pwd; print(pwd.getpwuid(os.getuid()).pw_name, os.getuid(), open(\"/proc/self/cgroup\").read().strip())" | tee /tmp/who
      grep -q "^$name " /tmp/who; grep -q "jupyter-$name-singleuser.service/lab$" /tmp/who
      systemctl show "jupyter-$name-singleuser" -p User -p MemoryMax -p CPUQuotaPerSecUSec -p TasksMax -p Delegate -p NoNewPrivileges -p ProtectProc
    done
    name=${first%%:*}; password=${first#*:}; other=${second%%:*}
    other_pid=$(systemctl show -p MainPID --value "jupyter-$other-singleuser")
    client "$name" "$password" "OTHER = \"$other\"; OTHER_PID = $other_pid" --file '"$GUEST_REPO"'/vagrant/class-learner-checks.py
    # The instructor sees it: three failed checks of one exercise make the learner stuck there.
    client "$name" "$password" "from minicontainer import lab" "for _ in range(3): lab.check(\"welcome-pid-namespace\", 1)"
    teacher=$(sudo cat /etc/minicontainer/class/instructor)
    client "${teacher%%:*}" "${teacher#*:}" --get services/instructor/ > /tmp/class.html
    grep -o "<tr><th>$name</th>.*welcome-pid-namespace</td>" /tmp/class.html | head -c 300; echo
    grep -q "<tr><th>$name</th><td>running</td><td>0/[0-9]*</td><td class=stuck>welcome-pid-namespace</td>" /tmp/class.html
    grep -o "<tr><th>$other</th><td>[a-z]*</td><td>[0-9]*/[0-9]*</td>" /tmp/class.html  # both learners on the page'
  # Every lesson run by each learner through the hub, every cell (all of them, then the failures said): an
  # unprivileged learner in a unit of their own, as the class runs them.
  # shellcheck disable=SC2016  # expanded in the guest, not here
  vagrant ssh -c 'failed=""
    for line in $(sudo cat /etc/minicontainer/class/passwords); do
      for lesson in 00-welcome 01-namespaces 02-rootfs 03-cgroups 04-network 05-security 06-putting-it-together \
          07-claims 08-real-stack; do
        echo "== $lesson, as ${line%%:*}"
        sudo /opt/minicontainer/venv/bin/python -m minicontainer.classroom.client http://127.0.0.1:8000/ \
          "${line%%:*}" "${line#*:}" --cell-timeout 300 --keep-going \
          --notebook "/opt/minicontainer/checkout/notebooks/$lesson.ipynb" 2>&1 >/dev/null | cut -c1-300
        [ "${PIPESTATUS[0]}" = 0 ] || failed="$failed ${line%%:*}/$lesson"
      done
    done
    [ -z "$failed" ] || { echo "cells failed in:$failed"; exit 1; }'
}

phase_class_capacity() {
  # benchmarks/class_capacity.py with the class's learners at once, on the lightest lesson and on the heaviest
  # (05: a container per attack, twice each). A TCG guest's figures: its memory is a machine's, its CPU is not.
  local lesson
  for lesson in 00-welcome 05-security; do
    vagrant ssh -c "sudo /opt/minicontainer/venv/bin/python $GUEST_REPO/benchmarks/class_capacity.py \
      --notebook /opt/minicontainer/checkout/notebooks/$lesson.ipynb"
  done
}

# --- teardown: everything this run made, and only that -------------------------------------------

teardown() {
  set +e
  say "teardown"
  local t0=$SECONDS
  if [ -f "$VAGRANT_CWD/Vagrantfile" ]; then timeout 300 vagrant destroy -f; fi
  timeout 120 vagrant box remove --force --all "$BOX_NAME" 2>/dev/null
  # Anything libvirt holds now that it did not hold before: domains, volumes (box remove leaves the
  # box's volume in the pool), networks, pools.
  if virsh -c qemu:///system version >/dev/null 2>&1; then
    for dom in $(virsh -q list --all --name); do
      grep -qx "$dom" "$WORK/before.domains" || { virsh destroy "$dom"; virsh undefine --remove-all-storage "$dom"; }
    done
    for pool in $(virsh -q pool-list --all --name); do
      for vol in $(virsh -q vol-list "$pool" 2>/dev/null | awk '{print $1}'); do
        grep -qx "$pool/$vol" "$WORK/before.volumes" || virsh vol-delete --pool "$pool" "$vol"
      done
    done
    for net in $(virsh -q net-list --all --name); do
      grep -qx "$net" "$WORK/before.networks" || { virsh net-destroy "$net"; virsh net-undefine "$net"; }
    done
    for pool in $(virsh -q pool-list --all --name); do
      grep -qx "$pool" "$WORK/before.pools" || { virsh pool-destroy "$pool"; virsh pool-undefine "$pool"; }
    done
  fi
  # vagrant-libvirt's port forward is an ssh process; destroy ends it, this makes sure (by pid).
  for pid in $(pgrep -f "127.0.0.1:$MINICONTAINER_PORT:127.0.0.1:8888"); do kill "$pid"; done
  # The daemons we started (pid files, never by name).
  while read -r d; do
    if [ -f "/run/$d.pid" ]; then
      pid=$(cat "/run/$d.pid"); kill "$pid"
      for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    fi
  done < <(tac "$WORK/started" 2>/dev/null)
  if [ -s "$WORK/before.ip_forward" ]; then cat "$WORK/before.ip_forward" > /proc/sys/net/ipv4/ip_forward; fi
  # libvirtd makes a "machine" cgroup in every hierarchy for its domains and leaves it behind on this
  # systemd-less host: remove the empty ones this run created.
  for dir in /sys/fs/cgroup/*/machine; do
    if [ -d "$dir" ] && ! grep -qxF "$dir" "$WORK/before.cgroups" 2>/dev/null; then
      find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null || echo "LEFT: $dir (not empty)"
    fi
  done
  # libvirt's networks leave LIBVIRT_* chains in iptables after they are destroyed: drop those that
  # were not there before this run (their jumps first, then the chains).
  for ipt in iptables ip6tables; do
    for table in filter nat mangle; do
      "$ipt" -t "$table" -S 2>/dev/null | grep -E '^-A .* -j LIBVIRT_' | while read -r rule; do
        chain=$(sed -E 's/.*-j (LIBVIRT_[A-Z]+).*/\1/' <<<"$rule")
        grep -qx "$ipt $table $chain" "$WORK/before.chains" || eval "$ipt -t $table ${rule/-A/-D}"
      done
      for chain in $("$ipt" -t "$table" -S 2>/dev/null | awk '$1=="-N" && $2 ~ /^LIBVIRT_/ {print $2}'); do
        grep -qx "$ipt $table $chain" "$WORK/before.chains" || { "$ipt" -t "$table" -F "$chain"; "$ipt" -t "$table" -X "$chain"; }
      done
    done
  done
  # A failed image build: its mounts and loop device.
  if [ -d "$WORK/build/mnt" ]; then
    findmnt -R -n -o TARGET --list "$WORK/build/mnt" | sort -r | xargs -r -n1 umount -l
  fi
  [ -f "$WORK/build/loop" ] && losetup -d "$(cat "$WORK/build/loop")"
  for loop in $(losetup -j "$WORK/build/disk.raw" -O NAME -n 2>/dev/null); do losetup -d "$loop"; done
  started_daemons=$(cat "$WORK/started" 2>/dev/null)
  rm -rf "$WORK"
  printf '=== [acceptance] teardown took %ss\n' "$((SECONDS - t0))"
  leftovers
}

leftovers() {
  # What must not outlive a run: say it loudly if anything does.
  local bad=0
  if virsh -c qemu:///system version >/dev/null 2>&1; then
    virsh -q list --all --name | grep -q . && { echo "LEFT: domains"; bad=1; }
  fi
  losetup -a | grep -q minicontainer-acceptance && { echo "LEFT: loop devices"; bad=1; }
  grep -q minicontainer-acceptance /proc/mounts && { echo "LEFT: mounts"; bad=1; }
  ip -o link show | grep -q virbr && { echo "LEFT: a libvirt bridge"; bad=1; }
  iptables -S 2>/dev/null | grep -q LIBVIRT_ && { echo "LEFT: LIBVIRT_ iptables chains"; bad=1; }
  for d in $started_daemons; do pgrep -x "$d" >/dev/null && { echo "LEFT: $d (started by this run)"; bad=1; }; done
  [ $bad = 0 ] && echo "nothing left behind"
}

# --- driver ---------------------------------------------------------------------------------------

if [ "${1:-}" = __phase ]; then "phase_$2"; exit; fi
if [ "${1:-}" = teardown ]; then teardown; exit; fi   # after a run kept by MINICONTAINER_ACCEPTANCE_KEEP=1

mkdir -p "$WORK"
: > "$WORK/started"
finish() {
  local rc=$?
  # For whoever debugs a failure: MINICONTAINER_ACCEPTANCE_KEEP=1 leaves the VM up (then:
  # `vagrant/acceptance.sh __phase NAME` re-runs one phase, `vagrant/acceptance.sh teardown` cleans up).
  if [ $rc != 0 ] && [ -n "${MINICONTAINER_ACCEPTANCE_KEEP:-}" ]; then
    echo "kept for debugging; tear down with: $0 teardown"
  else
    teardown
  fi
  summary
  exit $rc
}
trap finish EXIT
trap stop_phase INT TERM

ls -d /sys/fs/cgroup/*/machine > "$WORK/before.cgroups" 2>/dev/null || true
cat /proc/sys/net/ipv4/ip_forward > "$WORK/before.ip_forward"  # libvirt's NAT network turns it on
run_phase copy_repo 300
run_phase prereqs 900
run_phase daemons 60
# What existed before: teardown removes only the difference.
virsh -q list --all --name > "$WORK/before.domains"
virsh -q net-list --all --name > "$WORK/before.networks"
virsh -q pool-list --all --name > "$WORK/before.pools"
while read -r pool; do
  virsh -q vol-list "$pool" | awk -v p="$pool" '{print p "/" $1}'
done < "$WORK/before.pools" > "$WORK/before.volumes"
for ipt in iptables ip6tables; do for table in filter nat mangle; do
  "$ipt" -t "$table" -S 2>/dev/null | awk -v i="$ipt" -v t="$table" '$1=="-N" {print i, t, $2}'
done; done > "$WORK/before.chains"

run_phase build_box 1800
run_phase box_add 600
run_phase up 900
run_phase host_trust 120
run_phase provision 5400
run_phase provision 900   # again: re-provisioning must be safe and quick
run_phase checks 600
if [ -z "${MINICONTAINER_ACCEPTANCE_SKIP_TESTS:-}" ]; then
  run_phase runtime_tests 3600
  run_phase nbval 5400
fi
if [ -n "${MINICONTAINER_ACCEPTANCE_CLASS:-}" ]; then
  run_phase class_host 3600
  run_phase class_checks 3600
  run_phase class_capacity 1800
fi
say "acceptance passed"
