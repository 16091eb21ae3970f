#!/usr/bin/env bash
# One class host for many learners: JupyterHub, each learner a Unix account whose JupyterLab runs as a systemd
# unit of its own (memory, CPU and task limits, a delegated cgroup v2 subtree), root of nothing on the host.
#
#   sudo vagrant/class-host.sh LEARNERS [URL]
#
#   LEARNERS  how many learner accounts (learner01, learner02, ...); running again with more adds the rest
#   URL       what learners open (default: http://THIS_HOST'S_NAME:8000/); printed on their login cards
#
# It provisions the machine with vagrant/provision.sh (the lab VM's own script: packages, the Python
# environment, the rootfs) from a copy of this checkout in /opt/minicontainer/checkout that every learner can
# read, then adds JupyterHub (PyPI, pinned by constraints.txt) with its proxy (npm), the learners, the hub's
# service, and the login cards: /etc/minicontainer/class/cards.txt and cards.html (root only: they hold the
# passwords). Running it again is safe: existing accounts and passwords are kept.
#
# Environment (all optional):
#   MINICONTAINER_LEARNER_MEMORY  MemoryMax of each learner's server and containers (default 1G)
#   MINICONTAINER_LEARNER_CPU     CPUQuota, in CPUs (default 1)
#   MINICONTAINER_LEARNER_TASKS   TasksMax (default 512)
#   MINICONTAINER_HUB_IP          address the hub listens on (default: all, 0.0.0.0)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
SOURCE=$(dirname "$HERE")
PREFIX=/opt/minicontainer
CHECKOUT=$PREFIX/checkout
VENV=$PREFIX/venv
NODE=$PREFIX/node
ETC=/etc/minicontainer
CLASS=$ETC/class
HUB_STATE=/var/lib/minicontainer/hub
LIBEXEC=/usr/local/libexec/minicontainer
mapfile -t NPM_PACKAGES < <(sed 's/#.*//' "$HERE/npm-packages.txt" | xargs -n1)  # the proxy, pinned
MEMORY=${MINICONTAINER_LEARNER_MEMORY:-1G}
CPU=${MINICONTAINER_LEARNER_CPU:-1}
TASKS=${MINICONTAINER_LEARNER_TASKS:-512}
HUB_IP=${MINICONTAINER_HUB_IP:-0.0.0.0}
started=$(date +%s)
step() { printf '\n==> [class-host %3ss] %s\n' "$(($(date +%s) - started))" "$*"; }
die() { printf 'class-host: %s\n' "$*" >&2; exit 1; }
# Easy to type from a card: lower case and digits without look-alikes (no l, o, 0, 1).
new_password() { python3 -c 'import secrets, sys; print("".join(secrets.choice("abcdefghijkmnpqrstuvwxyz23456789") for _ in range(int(sys.argv[1]))))' "$1"; }

[ "$(id -u)" = 0 ] || die "run as root (sudo $0 LEARNERS): it adds users and system services"
LEARNERS=${1:-}
case "$LEARNERS" in
  ''|*[!0-9]*) die "how many learners? e.g. sudo $0 30 (a number, 1 to 300)" ;;
esac
if [ "$LEARNERS" -lt 1 ] || [ "$LEARNERS" -gt 300 ]; then
  die "$LEARNERS learners: give 1 to 300 (one host holds about 100)"
fi
URL=${2:-http://$(hostname -f 2>/dev/null || hostname):8000/}
[[ $MEMORY =~ ^[0-9]+[KMGT]?$ ]] || die "MINICONTAINER_LEARNER_MEMORY=$MEMORY: give bytes or a size such as 1G or 768M"
[[ $CPU =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "MINICONTAINER_LEARNER_CPU=$CPU: give a number of CPUs such as 1 or 0.5"
[[ $TASKS =~ ^[1-9][0-9]*$ ]] || die "MINICONTAINER_LEARNER_TASKS=$TASKS: give a whole number of tasks such as 512"
[ -d /run/systemd/system ] || die "systemd is not running here: each learner's server is a systemd unit"
[ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] ||
  die "/sys/fs/cgroup is not cgroup v2: learners get their limits and containers' cgroups from a delegated v2 subtree"

step "the checkout, where every learner can read it: $CHECKOUT"
if [ "$SOURCE" != "$CHECKOUT" ]; then
  install -d -m 0755 "$PREFIX" "$CHECKOUT"
  # What git tracks (and untracked, not ignored, files), as acceptance.sh copies it; nothing of a .venv.
  if git -C "$SOURCE" rev-parse >/dev/null 2>&1; then
    git -C "$SOURCE" ls-files -co --exclude-standard -z | tar -C "$SOURCE" --null -T - -cf - | tar -C "$CHECKOUT" -xf -
  else
    # Not a git checkout (a copy, a synced folder): all of it but a venv, git's and Vagrant's own files.
    tar -C "$SOURCE" --exclude=.venv --exclude=.git --exclude=.vagrant -cf - . | tar -C "$CHECKOUT" -xf -
  fi
  chown -R root:root "$CHECKOUT" && chmod -R u+rwX,go+rX,go-w "$CHECKOUT"
fi

step "the lab's own provisioning (packages, $VENV with JupyterHub, the rootfs), no single-learner service"
MINICONTAINER_ROLE=class MINICONTAINER_EXTRAS=lab,class "$CHECKOUT/vagrant/provision.sh" "$CHECKOUT"

step "JupyterHub's proxy from npm (${NPM_PACKAGES[*]}), in $NODE"
command -v npm >/dev/null || DEBIAN_FRONTEND=noninteractive timeout 1800 apt-get install -y --no-install-recommends nodejs npm
if [ "$(cat "$NODE/installed" 2>/dev/null)" != "${NPM_PACKAGES[*]}" ]; then
  timeout 900 npm install --no-audit --no-fund --prefix "$NODE" "${NPM_PACKAGES[@]}"
  echo "${NPM_PACKAGES[*]}" > "$NODE/installed"
fi

step "learners learner01..learner$(printf %02d "$LEARNERS")"
install -d -m 0700 "$CLASS"
touch "$CLASS/passwords" && chmod 0600 "$CLASS/passwords"
for i in $(seq "$LEARNERS"); do
  name=$(printf 'learner%02d' "$i")
  if ! id -u "$name" >/dev/null 2>&1; then
    # A home only its owner may enter: learners cannot read one another's work.
    useradd --create-home --shell /bin/bash --key HOME_MODE=0700 "$name"
  fi
  chmod 0700 "/home/$name"
  if ! grep -q "^$name:" "$CLASS/passwords"; then
    # 12 characters of 32: 60 bits.
    password=$(new_password 12)
    echo "$name:$password" | chpasswd
    echo "$name:$password" >> "$CLASS/passwords"
  fi
  # The lessons, each learner's own copy (work saved there is theirs); refreshed only where missing.
  if [ ! -d "/home/$name/lab" ]; then
    cp -r "$CHECKOUT/notebooks" "/home/$name/lab"
    mkdir -p "/home/$name/lab/work"
    chown -R "$name:" "/home/$name/lab"
  fi
done

step "the instructor's account (instructor): the hub's admin, who sees the class at /services/instructor/"
if ! id -u instructor >/dev/null 2>&1; then
  useradd --create-home --shell /bin/bash --key HOME_MODE=0700 instructor
fi
if [ ! -s "$CLASS/instructor" ]; then
  password=$(new_password 16)
  echo "instructor:$password" | chpasswd
  (umask 077 && echo "instructor:$password" > "$CLASS/instructor")
fi

step "the hub: $ETC/jupyterhub_config.py and the service minicontainer-hub"
install -d -m 0700 "$HUB_STATE"
install -d "$LIBEXEC"
install -m 0755 "$CHECKOUT/vagrant/in-leaf.sh" "$LIBEXEC/in-leaf"
learners=$(cut -d: -f1 "$CLASS/passwords" | sed 's/.*/"&"/' | paste -sd, -)
cat > "$ETC/jupyterhub_config.py" <<EOF
# Written by vagrant/class-host.sh; re-run it instead of editing this file.
c = get_config()  # noqa: F821 (JupyterHub provides it)
c.JupyterHub.bind_url = "http://$HUB_IP:8000/"
c.JupyterHub.db_url = "sqlite:///$HUB_STATE/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "$HUB_STATE/cookie_secret"
c.ConfigurableHTTPProxy.command = ["$NODE/node_modules/.bin/configurable-http-proxy"]
c.ConfigurableHTTPProxy.pid_file = "$HUB_STATE/proxy.pid"
# Unix accounts and their passwords (PAM), only the class's.
c.Authenticator.allowed_users = {$learners}
c.Authenticator.admin_users = {"instructor"}
# The instructor's view: each learner's checks, who is stuck where, a reset (minicontainer.classroom.instructor).
c.JupyterHub.services = [{
    "name": "instructor", "url": "http://127.0.0.1:8010", "oauth_no_confirm": True,
    "command": ["$VENV/bin/python", "-m", "minicontainer.classroom.instructor", "--lessons", "$CHECKOUT/notebooks"],
}]
c.JupyterHub.load_roles = [{"name": "instructor-service", "services": ["instructor"],
                            "scopes": ["list:users", "read:users", "read:servers", "servers"]}]
# Each learner's JupyterLab: a systemd unit of its own, run as the learner, with the class's limits.
c.JupyterHub.spawner_class = "systemdspawner.SystemdSpawner"
c.SystemdSpawner.mem_limit = "$MEMORY"
c.SystemdSpawner.cpu_limit = float($CPU)
c.SystemdSpawner.unit_extra_properties = {
    "TasksMax": "$TASKS",
    # The unit's cgroup is the learner's own: rootless containers' cgroups and limits go below it. in-leaf
    # moves the server into the child 'lab', since cgroup v2 enables controllers only for a cgroup's children
    # while it holds no processes itself.
    "Delegate": "yes",
    # A /proc of its own that shows only the learner's own processes (hidepid=invisible), not other learners'.
    "ProtectProc": "invisible",
}
c.SystemdSpawner.isolate_tmp = True         # a /tmp of its own
# No NoNewPrivileges (the spawner's disable_user_sudo): it would stop the setuid newuidmap for the learner.
c.SystemdSpawner.disable_user_sudo = False
c.SystemdSpawner.default_shell = "/bin/bash"
c.SystemdSpawner.user_workingdir = "/home/{USERNAME}"
c.SystemdSpawner.extra_paths = ["$VENV/bin"]
c.Spawner.cmd = ["$LIBEXEC/in-leaf", "$VENV/bin/jupyterhub-singleuser"]
c.Spawner.notebook_dir = "/home/{username}/lab"
c.Spawner.default_url = "/lab/tree/00-welcome.ipynb"
c.Spawner.environment = {
    "MINICONTAINER_LAB": "class",
    # Each check a learner runs is recorded there, for the instructor's view.
    "MINICONTAINER_PROGRESS": lambda spawner: f"/home/{spawner.user.name}/.minicontainer/progress.jsonl",
}
c.Spawner.start_timeout = 300
c.Spawner.http_timeout = 300
EOF
cat > /etc/systemd/system/minicontainer-hub.service <<EOF
# Written by vagrant/class-host.sh; re-run it instead of editing this file.
[Unit]
Description=minicontainer lab: JupyterHub for $LEARNERS learners on $HUB_IP:8000
After=network-online.target
Wants=network-online.target

[Service]
WorkingDirectory=$HUB_STATE
Environment=PATH=$VENV/bin:$NODE/node_modules/.bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
ExecStart=$VENV/bin/jupyterhub -f $ETC/jupyterhub_config.py
Restart=on-failure
RestartSec=5
# The learners' servers are units of their own: restarting the hub leaves them running.
KillMode=process

[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload
systemctl enable minicontainer-hub.service
systemctl restart minicontainer-hub.service
for _ in $(seq 60); do
  curl -fsS -o /dev/null "http://127.0.0.1:8000/hub/api/" 2>/dev/null && break
  sleep 2
done
curl -fsS "http://127.0.0.1:8000/hub/api/" || die "the hub did not answer on 127.0.0.1:8000: journalctl -u minicontainer-hub"
echo

step "login cards: $CLASS/cards.txt and cards.html"
{
  while IFS=: read -r name password; do
    printf 'minicontainer lab\n  open:      %s\n  user:      %s\n  password:  %s\n\n' "$URL" "$name" "$password"
  done < "$CLASS/passwords"
} > "$CLASS/cards.txt"
{
  echo '<!doctype html><meta charset="utf-8"><title>minicontainer lab: login cards</title>'
  echo '<style>div{display:inline-block;width:18em;margin:.5em;padding:1em;border:1px dashed #888;font:14px monospace}</style>'
  while IFS=: read -r name password; do
    printf '<div><b>minicontainer lab</b><br>open: %s<br>user: %s<br>password: %s</div>\n' "$URL" "$name" "$password"
  done < "$CLASS/passwords"
} > "$CLASS/cards.html"
chmod 0600 "$CLASS/cards.txt" "$CLASS/cards.html"
echo "$(wc -l < "$CLASS/passwords") learners; print $CLASS/cards.html, one card per learner"
step "done: the class at $URL"
echo "the instructor's view: ${URL}services/instructor/ (user instructor, password in $CLASS/instructor)"
