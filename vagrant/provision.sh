#!/usr/bin/env bash
# Turn a Debian 12 or 13 / Ubuntu 24.04 machine into the minicontainer lab (the lab VM runs this; so can an
# instructor on a bare host or cloud VM):
#
#   sudo vagrant/provision.sh [REPO_DIR]    REPO_DIR: the checkout (default: the one holding this script)
#
# It installs the apt packages and the Python environment (/opt/minicontainer/venv, pinned by the repo's
# constraints.txt, the file CI uses), builds the default rootfs (/var/lib/minicontainer), and runs
# JupyterLab as the systemd service minicontainer-lab, started on boot, serving REPO_DIR/notebooks.
# Running it again is safe: each step checks what is already there.
#
# Environment (all optional):
#   MINICONTAINER_USER    who may read the token (default: $SUDO_USER, else vagrant if it exists)
#   MINICONTAINER_LAB_IP  address JupyterLab listens on (default 127.0.0.1; the Vagrantfile says when a
#                         provider's NAT port forward needs the guest's NAT interface instead)
#   MINICONTAINER_EXTRAS  pip extras to install (default "lab"; "lab,notebooks" adds pytest and nbval)
#   MINICONTAINER_ROLE    "class": a class host's base (vagrant/class-host.sh): no single-learner JupyterLab
#                         service (each learner gets a server of their own from JupyterHub)
set -euo pipefail

REPO=$(cd "${1:-$(dirname "$0")/..}" && pwd)
PREFIX=/opt/minicontainer
VENV=$PREFIX/venv
LIBEXEC=/usr/local/libexec/minicontainer
ETC=/etc/minicontainer
NOTEBOOKS=$REPO/notebooks
LAB_IP=${MINICONTAINER_LAB_IP:-127.0.0.1}
EXTRAS=${MINICONTAINER_EXTRAS:-lab}
ROLE=${MINICONTAINER_ROLE:-vm}
case "$ROLE" in vm|class) ;; *) echo "provision: MINICONTAINER_ROLE is vm (default) or class, not $ROLE" >&2; exit 2 ;; esac
LAB_USER=${MINICONTAINER_USER:-${SUDO_USER:-}}
if [ -z "$LAB_USER" ] || [ "$LAB_USER" = root ]; then
  LAB_USER=$(id -un vagrant 2>/dev/null || echo root)
fi
started=$(date +%s)
step() { printf '\n==> [provision %3ss] %s\n' "$(($(date +%s) - started))" "$*"; }
die() { printf 'provision: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (sudo $0): it installs packages and a system service"
if [ ! -f "$REPO/pyproject.toml" ] || [ ! -f "$REPO/constraints.txt" ] || [ ! -f "$REPO/packages.apt" ]; then
  die "$REPO is not the minicontainer checkout"
fi

# The lab's packages (one list, shared with ./lab), and curl for this script's own health check.
mapfile -t APT_PACKAGES < <(sed 's/#.*//' "$REPO/packages.apt" | xargs -n1)
APT_PACKAGES+=(curl)

# shellcheck source=/dev/null
. /etc/os-release
step "host: $PRETTY_NAME, kernel $(uname -r), repo $REPO"
case "$ID-$VERSION_ID" in
  debian-12|debian-13|ubuntu-24.04) ;;
  *) echo "warning: tested on Debian 12 and 13 and Ubuntu 24.04 only; continuing on $ID $VERSION_ID" ;;
esac

# The lab teaches cgroup v2 only. Ubuntu 24.04 and Debian 12 boot pure v2 unless told otherwise.
if [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then
  echo "warning: /sys/fs/cgroup is not cgroup v2 (it is $(stat -fc %T /sys/fs/cgroup))."
  echo "         add systemd.unified_cgroup_hierarchy=1 to GRUB_CMDLINE_LINUX, update-grub and reboot."
fi

step "apt packages"
missing=()
for p in "${APT_PACKAGES[@]}"; do
  if dpkg -s "$p" >/dev/null 2>&1; then continue; fi
  # Docker's containerd.io provides containerd and runc and conflicts with Debian's: installing those would
  # make apt remove Docker from an instructor's host. Its own copies serve the lab as well.
  case "$p" in runc|containerd) if command -v "$p" >/dev/null; then echo "$p: using $(command -v "$p")"; continue; fi ;; esac
  missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  timeout 900 apt-get update
  # containerd's package would start a system containerd the lab never uses (lesson 08 runs its own):
  # policy-rc.d's 101 ("action forbidden") keeps it stopped, for this install only.
  guard=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    guard=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' > "$guard" && chmod +x "$guard"
  fi
  status=0
  DEBIAN_FRONTEND=noninteractive timeout 1800 apt-get install -y --no-install-recommends "${missing[@]}" || status=$?
  if [ -n "$guard" ]; then rm -f "$guard"; fi
  [ "$status" -eq 0 ] || exit "$status"
  case " ${missing[*]} " in
    *" containerd "*) if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
                        systemctl disable containerd.service || true  # nor at the next boot
                      fi ;;
  esac
else
  echo "all present"
fi

step "unprivileged user namespaces"
# Ubuntu 23.10+ lets AppArmor refuse user namespaces to unprivileged processes. The rootless lesson (05) makes
# one as an ordinary user: a profile allows that to the lab's own interpreter only (no host-wide switch).
"$REPO/vagrant/userns-profile.sh"

step "Python environment $VENV (pip install -c constraints.txt -e '.[$EXTRAS]')"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# Skip pip when nothing it depends on changed since the last successful run (re-provisioning stays fast).
stamp=$PREFIX/installed.sha256
want=$( { cat "$REPO/pyproject.toml" "$REPO/constraints.txt"; echo "$EXTRAS $REPO editable_mode=compat"; } | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! "$VENV/bin/python" -c 'import minicontainer' 2>/dev/null; then
  # pip first, at the version CI uses, so the VM resolves exactly as CI does.
  timeout 600 "$VENV/bin/pip" install --disable-pip-version-check -c "$REPO/constraints.txt" pip
  # pip's progress bars stay on: under emulation this is the long step, and it should look alive.
  # editable_mode=compat: a plain path in a .pth file, not an import hook that costs every interpreter ~8 ms.
  timeout 2400 "$VENV/bin/pip" install --disable-pip-version-check -c "$REPO/constraints.txt" \
    --config-settings editable_mode=compat -e "${REPO}[${EXTRAS}]"
  echo "$want" > "$stamp"
else
  echo "up to date"
fi
ln -sf "$VENV/bin/minicontainer" /usr/local/bin/minicontainer  # on root's and sudo's PATH

step "default rootfs in /var/lib/minicontainer"
if [ -x /var/lib/minicontainer/rootfs/busybox/bin/busybox ]; then
  echo "already built"
else
  minicontainer rootfs build
fi

if [ "$ROLE" = class ]; then
  # A class host serves each learner through JupyterHub: the single-learner service must not run (it would
  # give whoever has its token root's JupyterLab).
  if [ -f /etc/systemd/system/minicontainer-lab.service ]; then
    systemctl disable --now minicontainer-lab.service 2>/dev/null || true
    rm -f /etc/systemd/system/minicontainer-lab.service
    systemctl daemon-reload 2>/dev/null || true
  fi
  step "doctor"
  minicontainer doctor || true
  step "done: the class host's base (vagrant/class-host.sh goes on from here)"
  exit 0
fi

step "JupyterLab token and work folder"
install -d -m 0755 "$ETC"
if [ ! -s "$ETC/token" ]; then
  python3 -c 'import secrets; print(secrets.token_hex(24))' > "$ETC/token.new"
  mv "$ETC/token.new" "$ETC/token"
fi
# The learner reads the token (group $LAB_USER); the service reads it as an EnvironmentFile (root only).
chown "root:$(id -gn "$LAB_USER")" "$ETC/token" && chmod 0640 "$ETC/token"
(umask 077 && printf 'JUPYTER_TOKEN=%s\n' "$(cat "$ETC/token")" > "$ETC/lab.env")
# Learner files go in notebooks/work: inside what JupyterLab serves, and on the host when synced.
mkdir -p "$NOTEBOOKS/work"
# Shared folders may refuse chown (9p in squash mode, NFS with root squash): then let any user of this
# one-learner machine write there, so a shell in the VM can save work too (9p in squash mode even
# reports success for a chown it ignores: so check the outcome).
chown "$LAB_USER:" "$NOTEBOOKS/work" 2>/dev/null || true
if ! runuser -u "$LAB_USER" -- test -w "$NOTEBOOKS/work"; then chmod 1777 "$NOTEBOOKS/work"; fi

step "the checkout reachable by the rootless lesson's unprivileged user"
# Lesson 05 runs the runtime as uid 20000 with the checkout on PYTHONPATH. Homes are 0700 on Debian 13
# and 0750 on Ubuntu 24.04, so that user cannot reach a checkout in one. On the lab VM (one learner,
# the vagrant user) let others pass through (x only: no listing) each directory above the checkout that
# stops them; on any other machine say what to do rather than change someone's home.
if setpriv --reuid=20000 --regid=20000 --clear-groups test -r "$REPO/minicontainer/__init__.py"; then
  echo "uid 20000 can read $REPO"
else
  blocked=()
  dir=$REPO
  while [ "$dir" != / ]; do
    dir=$(dirname "$dir")
    if ! setpriv --reuid=20000 --regid=20000 --clear-groups test -x "$dir"; then blocked+=("$dir"); fi
  done
  if [ "$LAB_USER" = vagrant ] && [ "$REPO" = /home/vagrant/minicontainer ] && [ ${#blocked[@]} -gt 0 ]; then
    chmod o+x "${blocked[@]}"
    echo "chmod o+x ${blocked[*]}: others may pass through to $REPO (not list it)"
  else
    echo "warning: uid 20000 cannot reach $REPO (blocked at: ${blocked[*]:-its own permissions}): the rootless"
    echo "         lesson will fail. Move the checkout below a directory others may traverse, or chmod o+x those."
  fi
fi

step "systemd service minicontainer-lab (Delegate=yes, processes in the leaf cgroup 'lab')"
install -d "$LIBEXEC"
install -m 0755 "$REPO/vagrant/in-leaf.sh" "$LIBEXEC/in-leaf"
cat > /etc/systemd/system/minicontainer-lab.service <<EOF
# Written by vagrant/provision.sh; re-run it instead of editing this file.
[Unit]
Description=minicontainer lab: JupyterLab on $LAB_IP:8888 serving $NOTEBOOKS
After=network-online.target local-fs.target remote-fs.target
Wants=network-online.target

[Service]
# Containers' cgroups go beside the lab's own (minicontainer/ in this unit's cgroup): Delegate=yes hands
# this subtree to us, and in-leaf moves the server into the child 'lab', because cgroup v2 enables
# controllers (memory, cpu, pids, io) only for children of a cgroup that holds no processes itself.
Delegate=yes
EnvironmentFile=$ETC/lab.env
Environment=PATH=$VENV/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
Environment=MINICONTAINER_LAB=vm
WorkingDirectory=/
# In the VM the notebooks are a synced folder that Vagrant mounts after boot: wait for it.
ExecStartPre=/bin/sh -c 'i=0; until [ -d "$NOTEBOOKS" ]; do i=\$((i+1)); [ \$i -lt 300 ] || exit 1; sleep 1; done'
ExecStart=$LIBEXEC/in-leaf $VENV/bin/jupyter lab --ip=$LAB_IP --port=8888 --no-browser --allow-root --ServerApp.root_dir=$NOTEBOOKS
Restart=on-failure
RestartSec=5
TimeoutStartSec=330

[Install]
WantedBy=multi-user.target
EOF

if [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  systemctl enable minicontainer-lab.service
  # restart, not start: a re-provision (or a fresh mount of the synced folder) must be picked up
  systemctl restart minicontainer-lab.service
  for _ in $(seq 60); do
    curl -fsS -o /dev/null "http://127.0.0.1:8888/api/status?token=$(cat "$ETC/token")" 2>/dev/null && break
    sleep 2
  done
  systemctl --no-pager --lines=5 status minicontainer-lab.service || true
else
  echo "no systemd here: start the lab by hand with"
  echo "  set -a; . $ETC/lab.env; $LIBEXEC/in-leaf $VENV/bin/jupyter lab --ip=$LAB_IP --no-browser --allow-root --ServerApp.root_dir=$NOTEBOOKS"
fi

step "doctor"
minicontainer doctor || true

step "done: JupyterLab on 127.0.0.1:8888 (from the host with the VM: http://127.0.0.1:8888/lab)"
echo "token: sudo cat $ETC/token   (in the VM: vagrant ssh -c 'sudo cat $ETC/token')"
