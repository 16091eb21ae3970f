#!/usr/bin/env bash
# Boot the user-data that vagrant/cloud-init-user-data.sh renders, with a NoCloud seed, in the acceptance
# box, and check that the VM comes up a ready lab. On a Debian 12 machine as root, by hand (about 14 minutes
# under TCG; not part of the default test command):
#
#   sudo vagrant/nocloud-check.sh                       (the Debian 13 box)
#   sudo MINICONTAINER_NOCLOUD_SUITE=bookworm vagrant/nocloud-check.sh     (the Debian 12 box)
#   MINICONTAINER_NOCLOUD_KEEP=1: leave the VM up after a failure; then `vagrant/nocloud-check.sh teardown`
#   MINICONTAINER_NOCLOUD_ACCEL=kvm where /dev/kvm can run guests (default tcg)
#   MINICONTAINER_NOCLOUD_SOURCE=git: the VM fetches the checkout with git (from a git daemon here, at HEAD's
#   commit) instead of as a tarball
#
# Nothing comes from outside the package registries:
# 1. the box: vagrant/acceptance.sh's cached Debian box (its build_box phase builds one if it is missing);
# 2. a cloud-ready copy of its disk: cloud-init installed in a chroot, the network left to cloud-init as in
#    Debian's cloud images (a real cloud image has cloud-init already: this step stands in for it);
# 3. the seed: user-data from cloud-init-user-data.sh (the checkout as a tarball URL, an ssh key made for this
#    run, a password, this host's CA certificates, which a network that inspects TLS needs), meta-data, and
#    an ISO labelled cidata;
# 4. the checkout: `git archive` of the tree under test (with uncommitted changes to tracked files), served
#    over HTTP on 127.0.0.1, which the guest reaches as 10.0.2.2 through qemu's user-mode network (or, with
#    SOURCE=git, a bare clone served by `git daemon` there);
# 5. qemu (2 vCPUs, 2 GiB, a qcow2 overlay on the copy, the serial console in a log), and a bounded wait
#    for the first boot's "minicontainer-lab: READY" (or FAILED) on the console;
# 6. checks, as the learner over ssh: cloud-init's status and its schema check of the user-data, sudo, the
#    token readable by the learner, the service in its leaf cgroup, `minicontainer doctor`, a container;
#    JupyterLab through an ssh tunnel with the token (and 403 without), and not on the VM's network side;
# 7. teardown, even on failure or Ctrl-C: the tunnel, qemu, the HTTP server, mounts, loop devices, the
#    work directory. Each phase runs under a timeout and prints its duration.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(dirname "$HERE")
WORK=${MINICONTAINER_NOCLOUD_DIR:-/var/tmp/minicontainer-nocloud}
CACHE=${MINICONTAINER_ACCEPTANCE_CACHE:-/var/cache/minicontainer/acceptance}
SUITE=${MINICONTAINER_NOCLOUD_SUITE:-trixie}
ACCEL=${MINICONTAINER_NOCLOUD_ACCEL:-tcg}
SOURCE=${MINICONTAINER_NOCLOUD_SOURCE:-tarball}
case "$SOURCE" in tarball|git) ;; *) echo "MINICONTAINER_NOCLOUD_SOURCE: tarball or git, not $SOURCE" >&2; exit 2 ;; esac
case "$SUITE" in
  bookworm) RELEASE=debian12 ;;
  trixie) RELEASE=debian13 ;;
  *) echo "MINICONTAINER_NOCLOUD_SUITE: bookworm (Debian 12) or trixie (Debian 13), not $SUITE" >&2; exit 2 ;;
esac
BOX_FILE=$CACHE/$RELEASE-libvirt.box
LEARNER=learner
FIRST_BOOT_TIMEOUT=2400   # 40 min: the first boot, provisioning included (about 12 under TCG)
VM_LIFETIME=4200          # qemu's own bound: it dies by then even if this script is killed outright
HOST_PACKAGES=(qemu-system-x86 qemu-utils genisoimage openssh-client curl git python3 fdisk)
BOX_BUILD_PACKAGES=(debootstrap grub-pc-bin e2fsprogs vagrant)  # acceptance.sh's build_box (vagrant: its key)

LABEL=nocloud
# shellcheck source=lib-vm.sh source-path=SCRIPTDIR
. "$HERE/lib-vm.sh"   # say, run_phase, summary, stop_phase: as acceptance.sh's

# Connection details of this run (ports, keys) live in the work directory, for every phase to read.
ports() {
  # shellcheck source=/dev/null
  . "$WORK/ports.env"
}
guest() {  # guest CMD: a command as the learner in the VM, over ssh with this run's key
  ports
  ssh -F /dev/null -i "$WORK/id_ed25519" -p "$SSH_PORT" -o IdentitiesOnly=yes -o BatchMode=yes \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o ConnectTimeout=10 \
    "$LEARNER@127.0.0.1" "$@"
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start NAME LIFETIME CMD...: a background process in its own session, bounded by timeout (so it ends even
# if this script is killed outright), its pid in WORK/NAME.pid for teardown.
start() {
  local name=$1 lifetime=$2; shift 2
  setsid timeout --kill-after=10 "$lifetime" "$@" </dev/null >"$WORK/$name.out" 2>&1 &
  echo $! > "$WORK/$name.pid"
}

apt_install() {  # with policy-rc.d's 101, so that no package starts a service on this host
  local guard=""
  timeout 900 apt-get update -q
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    guard=/usr/sbin/policy-rc.d
    touch "$WORK/policy-rc.d.ours"   # for teardown, should this be killed before it removes the guard
    printf '#!/bin/sh\nexit 101\n' > "$guard" && chmod +x "$guard"
  fi
  local status=0
  DEBIAN_FRONTEND=noninteractive timeout 1800 apt-get install -y -q --no-install-recommends "$@" || status=$?
  if [ -n "$guard" ]; then rm -f "$guard" "$WORK/policy-rc.d.ours"; fi
  return "$status"
}

# --- phases (each runs as `nocloud-check.sh __phase NAME` under its own timeout) --------------------

phase_prereqs() {
  [ "$(id -u)" = 0 ] || { echo "run as root: it mounts the image and installs packages"; exit 1; }
  local p missing=() wanted=("${HOST_PACKAGES[@]}")
  [ -s "$BOX_FILE" ] || wanted+=("${BOX_BUILD_PACKAGES[@]}")
  for p in "${wanted[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; else echo "all present: ${wanted[*]}"; fi
  qemu-system-x86_64 --version | head -1
}

phase_box() {
  if [ ! -s "$BOX_FILE" ]; then
    echo "no $BOX_FILE: building it with vagrant/acceptance.sh's build_box"
    # Its build directory inside ours, so that our teardown also clears what a failed build leaves.
    MINICONTAINER_ACCEPTANCE_SUITE=$SUITE MINICONTAINER_ACCEPTANCE_DIR=$WORK/acceptance \
      MINICONTAINER_ACCEPTANCE_CACHE=$CACHE "$HERE/acceptance.sh" __phase build_box
  fi
  echo "box: $BOX_FILE ($(du -h "$BOX_FILE" | cut -f1), $(date -r "$BOX_FILE" +%F))"
  tar -C "$WORK" -xf "$BOX_FILE" box.img
  qemu-img info "$WORK/box.img" | grep -E 'file format|virtual size'
}

phase_cloud_image() {
  # The box as a cloud image would be: cloud-init in it, and the network left to cloud-init (Debian's cloud
  # images source interfaces.d, where cloud-init writes its 50-cloud-init).
  local img=$WORK/cloud.raw mnt=$WORK/mnt loop part d
  qemu-img convert -O raw "$WORK/box.img" "$img"
  rm -f "$WORK/box.img"
  loop=$(losetup -f --show -P "$img")
  echo "$loop" > "$WORK/loop"
  blockdev --rereadpt "$loop"   # no udev here: ask the kernel for the partition
  part=${loop}p1
  [ -b "$part" ] || partx -a "$loop"
  for _ in $(seq 20); do [ -b "$part" ] && break; sleep 0.5; done
  mkdir -p "$mnt"
  mount "$part" "$mnt"
  for d in dev proc sys; do mount --bind "/$d" "$mnt/$d"; done
  cp --remove-destination /etc/resolv.conf "$mnt/etc/resolv.conf.nocloud"  # the chroot's apt uses this host's DNS
  mount --bind "$mnt/etc/resolv.conf.nocloud" "$mnt/etc/resolv.conf"
  printf '#!/bin/sh\nexit 101\n' > "$mnt/usr/sbin/policy-rc.d"; chmod +x "$mnt/usr/sbin/policy-rc.d"
  timeout 900 chroot "$mnt" apt-get update -q
  # e2fsprogs: cloud-init's resizefs runs resize2fs, which Debian 13's debootstrap no longer installs and
  # cloud images have.
  DEBIAN_FRONTEND=noninteractive timeout 1200 chroot "$mnt" apt-get install -y -q --no-install-recommends \
    cloud-init e2fsprogs
  chroot "$mnt" cloud-init --version
  rm -f "$mnt/usr/sbin/policy-rc.d"
  chroot "$mnt" apt-get clean
  printf 'auto lo\niface lo inet loopback\n\nsource /etc/network/interfaces.d/*\n' > "$mnt/etc/network/interfaces"
  umount "$mnt/etc/resolv.conf"; rm -f "$mnt/etc/resolv.conf.nocloud"
  for d in sys proc dev; do umount "$mnt/$d"; done
  umount "$mnt"
  losetup -d "$loop"; rm -f "$WORK/loop"
  qemu-img create -q -f qcow2 -b "$img" -F raw "$WORK/overlay.qcow2"
  du -h --apparent-size "$img"; du -h "$img" "$WORK/overlay.qcow2"
}

phase_seed() {
  local crt ca_args=() source_args size
  ports
  ssh-keygen -q -t ed25519 -N '' -C "nocloud-check" -f "$WORK/id_ed25519"
  (umask 077; openssl rand -hex 12 > "$WORK/password")
  for crt in /usr/local/share/ca-certificates/*.crt; do [ -f "$crt" ] && ca_args+=(--ca-cert "$crt"); done
  mkdir -p "$WORK/seed"
  if [ "$SOURCE" = git ]; then
    git -C "$REPO" rev-parse HEAD > "$WORK/source.commit"
    source_args=(--git "git://10.0.2.2:$HTTP_PORT/minicontainer.git" --ref "$(cat "$WORK/source.commit")")
  else
    source_args=(--tarball "http://10.0.2.2:$HTTP_PORT/minicontainer.tar.gz")
  fi
  "$HERE/cloud-init-user-data.sh" "${source_args[@]}" \
    --ssh-key "$WORK/id_ed25519.pub" --password-file "$WORK/password" "${ca_args[@]}" > "$WORK/seed/user-data"
  printf 'instance-id: minicontainer-nocloud-%s\nlocal-hostname: minicontainer-lab\n' "$(date +%s)" \
    > "$WORK/seed/meta-data"
  # The network a cloud's datasource would describe: DHCPv4 on the one NIC. (Without it cloud-init's fallback
  # asks DHCPv6 too, which qemu's user-mode network never answers: ifupdown then holds the boot 5 minutes.)
  printf 'version: 2\nethernets:\n  eth0:\n    dhcp4: true\n' > "$WORK/seed/network-config"
  genisoimage -quiet -output "$WORK/seed.iso" -volid cidata -joliet -rock \
    "$WORK/seed/user-data" "$WORK/seed/meta-data" "$WORK/seed/network-config"
  size=$(wc -c < "$WORK/seed/user-data")
  echo "user-data: $size bytes ($((${#ca_args[@]} / 2)) CA certificate(s) from this host); seed: $WORK/seed.iso"
}

phase_serve_git() {
  # A bare clone, served by git daemon as a forge serves git: the first boot fetches HEAD's commit by its
  # name, shallow (uploadpack.allowReachableSHA1InWant, as GitHub and GitLab allow).
  ports
  [ -z "$(git -C "$REPO" status --porcelain --untracked-files=no)" ] ||
    echo "warning: uncommitted changes are not in what git serves: only HEAD's commit"
  mkdir -p "$WORK/serve"
  git clone -q --bare --no-local "$REPO" "$WORK/serve/minicontainer.git"
  git -C "$WORK/serve/minicontainer.git" config uploadpack.allowReachableSHA1InWant true
  start http "$VM_LIFETIME" git daemon --reuseaddr --export-all --informative-errors --listen=127.0.0.1 \
    --port="$HTTP_PORT" --base-path="$WORK/serve" "$WORK/serve"
  for _ in $(seq 30); do
    git ls-remote "git://127.0.0.1:$HTTP_PORT/minicontainer.git" HEAD >/dev/null 2>&1 && break
    sleep 0.5
  done
  echo "serving $(git ls-remote "git://127.0.0.1:$HTTP_PORT/minicontainer.git" HEAD) by git daemon"
}

phase_serve() {
  if [ "$SOURCE" = git ]; then phase_serve_git; return; fi
  # The tree under test as a forge would serve it: `git archive` of HEAD, or of a commit of the working
  # tree when tracked files have changes (git stash create: nothing in the refs, nothing in the tree changes),
  # in one top directory as a forge's archive link has it (the first boot finds the checkout in there).
  local tree
  ports
  tree=$(git -C "$REPO" stash create 2>/dev/null || true)
  if [ -n "$tree" ]; then echo "serving HEAD with the working tree's uncommitted changes ($tree)"
  else tree=HEAD; echo "serving HEAD ($(git -C "$REPO" rev-parse --short HEAD))"; fi
  mkdir -p "$WORK/serve"
  git -C "$REPO" archive --format=tar.gz --prefix=minicontainer-test/ -o "$WORK/serve/minicontainer.tar.gz" "$tree"
  du -h "$WORK/serve/minicontainer.tar.gz"
  start http "$VM_LIFETIME" python3 -m http.server --bind 127.0.0.1 --directory "$WORK/serve" "$HTTP_PORT"
  for _ in $(seq 30); do
    curl -fs -o /dev/null "http://127.0.0.1:$HTTP_PORT/minicontainer.tar.gz" && break
    sleep 0.5
  done
  curl -fsSI "http://127.0.0.1:$HTTP_PORT/minicontainer.tar.gz" | head -1
}

phase_boot() {
  ports
  start qemu "$VM_LIFETIME" qemu-system-x86_64 -name minicontainer-nocloud -accel "$ACCEL" -cpu max \
    -smp 2 -m 2048 -nodefaults -vga std -display none -monitor none -serial "file:$WORK/serial.log" \
    -drive "file=$WORK/overlay.qcow2,if=virtio,format=qcow2" \
    -drive "file=$WORK/seed.iso,if=ide,media=cdrom,readonly=on" \
    -netdev "user,id=net0,hostfwd=tcp:127.0.0.1:$SSH_PORT-:22,hostfwd=tcp:127.0.0.1:$LAB_PORT-:8888" \
    -device virtio-net-pci,netdev=net0 -device virtio-rng-pci
  sleep 5
  kill -0 "$(cat "$WORK/qemu.pid")" 2>/dev/null || { cat "$WORK/qemu.out"; echo "qemu did not start"; exit 1; }
  echo "qemu running (pid $(cat "$WORK/qemu.pid")); ssh on 127.0.0.1:$SSH_PORT, the VM's 8888 on 127.0.0.1:$LAB_PORT"
}

# The serial console as text: without carriage returns and the terminal queries systemd writes there.
plain() { sed -e 's/\r//g' -e 's/\x1b\[[0-9;?!]*[a-zA-Z]//g' -e 's/\x1b\][0-9;]*\x07//g'; }

phase_first_boot() {
  # Bounded: the first boot's READY or FAILED line on the serial console, or cloud-init done (asked over ssh
  # once the learner's account exists), or qemu gone. Progress lines are echoed as they come.
  local log=$WORK/serial.log t0=$SECONDS seen=0 lines status
  while [ $((SECONDS - t0)) -lt $((FIRST_BOOT_TIMEOUT - 30)) ]; do
    lines=0; [ ! -f "$log" ] || lines=$(wc -l < "$log")
    if [ "$lines" -gt "$seen" ]; then
      tail -n "+$((seen + 1))" "$log" | head -n "$((lines - seen))" | plain |
        grep -a -E '==> \[(first-boot|provision)|Cloud-init v|minicontainer-lab: |login:' | cut -c1-200 || true
      seen=$lines
    fi
    if grep -a -q 'minicontainer-lab: READY' "$log"; then echo "ready after $((SECONDS - t0)) s"; return 0; fi
    if grep -a -q 'minicontainer-lab: FAILED' "$log"; then
      plain < "$log" | tail -40; echo "the first boot failed after $((SECONDS - t0)) s"; return 1
    fi
    kill -0 "$(cat "$WORK/qemu.pid")" 2>/dev/null || { plain < "$log" | tail -40; echo "qemu exited"; return 1; }
    if [ $(((SECONDS - t0) % 60)) -lt 10 ] && status=$(guest cloud-init status 2>/dev/null); then
      case "$status" in *done*|*error*|*disabled*)
        plain < "$log" | tail -40; echo "cloud-init: $status, and no READY line on the console"; return 1 ;;
      esac
    fi
    sleep 10
  done
  plain < "$log" | tail -40; echo "no READY within $FIRST_BOOT_TIMEOUT s"; return 1
}

phase_checks() {
  local rc=0 out token code
  ports
  # cloud-init's own verdict: done, no errors or warnings; and its schema check of the user-data it ran.
  guest cloud-init status --long || rc=$?
  [ "$rc" = 0 ] || { echo "cloud-init status: exit $rc (1: errors, 2: recoverable errors)"; exit 1; }
  guest sudo -n cloud-init schema --config-file /var/lib/cloud/instance/user-data.txt | tee "$WORK/schema.out"
  grep -q '^Valid' "$WORK/schema.out"
  if grep -qi deprecated "$WORK/schema.out"; then echo "the user-data uses deprecated keys"; exit 1; fi
  # shellcheck disable=SC2016  # expanded in the guest, not here
  guest 'set -e
    echo "$(id -un): $(id)"; sudo -n true && echo "sudo without a password: yes"
    sudo -n getent shadow '"$LEARNER"' | cut -d: -f2 | grep -q "^[$]6[$]" && echo "password: a SHA-512 crypt hash"
    . /etc/os-release; echo "guest: $PRETTY_NAME, kernel $(uname -r), cloud-init $(cloud-init --version 2>&1)"
    echo "checkout: $(ls /opt/minicontainer/checkout | tr "\n" " ")"; df -h / | tail -1
    sudo -n grep -E "==> \[first-boot|READY" /var/log/cloud-init-output.log
    sudo -n grep "checkout.s vagrant/provision.sh is the embedded one" /var/log/cloud-init-output.log
    ls /usr/local/share/ca-certificates/
    echo "cgroup fs: $(stat -fc %T /sys/fs/cgroup)"; test "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs
    systemctl is-active minicontainer-lab
    pid=$(systemctl show -p MainPID --value minicontainer-lab)
    echo "lab server cgroup: $(cat /proc/$pid/cgroup)"; grep -q "minicontainer-lab.service/lab$" /proc/$pid/cgroup
    test -r /etc/minicontainer/token && echo "the token is readable by $(id -un) without sudo"
    sudo -n minicontainer doctor'
  if [ "$SOURCE" = git ]; then
    out=$(guest sudo -n git -C /opt/minicontainer/checkout rev-parse HEAD)
    echo "the checkout is a git checkout at $out"; [ "$out" = "$(cat "$WORK/source.commit")" ]
  fi
  out=$(guest "sudo -n minicontainer run --memory 32M --pids 16 --hostname nocloud -- sh -c 'echo hello from \$(hostname)'")
  echo "$out"; grep -q "hello from nocloud" <<<"$out"
  # JupyterLab, as the learner reaches it: an ssh tunnel to the VM's 127.0.0.1:8888, with the token.
  token=$(guest cat /etc/minicontainer/token | tr -d '\r\n')
  [ -n "$token" ]
  start tunnel 600 ssh -F /dev/null -i "$WORK/id_ed25519" -p "$SSH_PORT" -o IdentitiesOnly=yes -o BatchMode=yes \
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ExitOnForwardFailure=yes -N \
    -L "127.0.0.1:$TUNNEL_PORT:127.0.0.1:8888" "$LEARNER@127.0.0.1"
  for _ in $(seq 30); do curl -s -o /dev/null "http://127.0.0.1:$TUNNEL_PORT/" && break; sleep 1; done
  curl -fsS "http://127.0.0.1:$TUNNEL_PORT/api/status?token=$token"; echo
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$TUNNEL_PORT/api/status")
  echo "without the token: HTTP $code"; [ "$code" = 403 ]
  # Not on the VM's network side: qemu forwards host port LAB_PORT to the VM's 8888 on its NAT address.
  if curl -s -m 10 -o /dev/null "http://127.0.0.1:$LAB_PORT/api/status"; then
    echo "JupyterLab answers on the VM's network interface: it must listen on 127.0.0.1 only"; exit 1
  fi
  echo "the VM's network side (forwarded from 127.0.0.1:$LAB_PORT): no JupyterLab, as it should be"
  stop tunnel
}

# --- teardown: what this run made, and only that ----------------------------------------------------

stop() {  # stop NAME: the process started by `start NAME`, if it is still the one (its command names WORK)
  local pid
  pid=$(cat "$WORK/$1.pid" 2>/dev/null) || return 0
  # Its process group (timeout and what it runs: start made it a session leader), TERM, then KILL.
  if kill -0 "$pid" 2>/dev/null && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF "$WORK"; then
    kill -TERM -- "-$pid"
    for _ in $(seq 60); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.5; done
    kill -0 -- "-$pid" 2>/dev/null && kill -KILL -- "-$pid"
  fi
  rm -f "$WORK/$1.pid"
}

teardown() {
  set +e
  say "teardown"
  local t0=$SECONDS dir loop
  [ -d "$WORK" ] || { echo "nothing to tear down ($WORK is absent)"; return 0; }
  stop tunnel; stop qemu; stop http
  if [ -f "$WORK/policy-rc.d.ours" ] && [ "$(cat /usr/sbin/policy-rc.d 2>/dev/null)" = "$(printf '#!/bin/sh\nexit 101')" ]; then
    rm -f /usr/sbin/policy-rc.d   # the guard of an apt-get install this run started
  fi
  # Mounts (ours, and a failed box build's), deepest first; then the loop devices on our images.
  for dir in "$WORK/mnt" "$WORK/acceptance/build/mnt"; do
    [ -d "$dir" ] && findmnt -R -n -o TARGET --list "$dir" | sort -r | xargs -r -n1 umount -l
  done
  [ -f "$WORK/loop" ] && losetup -d "$(cat "$WORK/loop")"
  for loop in $(losetup -n -O NAME -j "$WORK/cloud.raw" 2>/dev/null) \
              $(losetup -n -O NAME -j "$WORK/acceptance/build/disk.raw" 2>/dev/null); do
    losetup -d "$loop"
  done
  rm -rf "$WORK"
  printf '=== [nocloud] teardown took %ss\n' "$((SECONDS - t0))"
  leftovers
}

leftovers() {
  local bad=0
  pgrep -f "$WORK" >/dev/null && { echo "LEFT: processes: $(pgrep -f "$WORK" | tr '\n' ' ')"; bad=1; }
  losetup -a | grep -qF "$WORK" && { echo "LEFT: loop devices"; bad=1; }
  grep -qF "$WORK" /proc/mounts && { echo "LEFT: mounts"; bad=1; }
  [ -e "$WORK" ] && { echo "LEFT: $WORK"; bad=1; }
  [ $bad = 0 ] && echo "nothing left behind"
}

# --- driver (as vagrant/acceptance.sh's) ----------------------------------------------------------

if [ "${1:-}" = __phase ]; then "phase_$2"; exit; fi
if [ "${1:-}" = teardown ]; then teardown; exit; fi   # after a run kept by MINICONTAINER_NOCLOUD_KEEP=1

if [ -d "$WORK" ]; then echo "a previous run left $WORK: tearing it down first"; teardown; fi
mkdir -p "$WORK"; chmod 700 "$WORK"
finish() {
  local rc=$?
  if [ $rc != 0 ] && [ -n "${MINICONTAINER_NOCLOUD_KEEP:-}" ]; then
    ports 2>/dev/null || true
    echo "kept for debugging: ssh -i $WORK/id_ed25519 -p ${SSH_PORT:-?} $LEARNER@127.0.0.1;" \
      "serial log $WORK/serial.log; tear down with: $0 teardown"
  else
    teardown
  fi
  summary
  exit $rc
}
trap finish EXIT
trap stop_phase INT TERM

printf 'SSH_PORT=%s\nLAB_PORT=%s\nHTTP_PORT=%s\nTUNNEL_PORT=%s\n' \
  "$(free_port)" "$(free_port)" "$(free_port)" "$(free_port)" > "$WORK/ports.env"
run_phase prereqs 1200
run_phase box 2400
run_phase cloud_image 1800
run_phase seed 120
run_phase serve 120
run_phase boot 120
run_phase first_boot "$FIRST_BOOT_TIMEOUT"
run_phase checks 600
say "the NoCloud VM booted into a ready lab"
