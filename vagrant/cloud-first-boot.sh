#!/usr/bin/env bash
# A cloud VM's first boot into one learner's lab. cloud-init's runcmd runs it: the user-data that
# vagrant/cloud-init-user-data.sh renders puts it in /opt/minicontainer/cloud-init/, beside the embedded
# provision.sh and settings.env (where the checkout comes from, the learner's account, the pip extras).
#
#   first-boot.sh SETTINGS
#
# 1. fetches the checkout into /opt/minicontainer/checkout: a git repository at a ref, or a tarball;
# 2. runs the embedded provision.sh on it for the learner (MINICONTAINER_USER);
# 3. checks that JupyterLab answers with its token and that `minicontainer doctor` passes, then prints
#    "minicontainer-lab: READY" on the console, or "minicontainer-lab: FAILED" and the step that failed.
# Running it again is safe: a checkout already there is kept, and provision.sh checks what is done.
set -euo pipefail
umask 022

SETTINGS=${1:?usage: first-boot.sh SETTINGS (the settings.env the user-data wrote)}
HERE=$(cd "$(dirname "$0")" && pwd)
CHECKOUT=/opt/minicontainer/checkout
TOKEN_FILE=/etc/minicontainer/token
# runcmd's environment is thin: pip wants a HOME, apt a PATH with sbin.
export HOME=${HOME:-/root} PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export DEBIAN_FRONTEND=noninteractive

SOURCE_GIT="" SOURCE_REF=HEAD SOURCE_TARBALL="" MINICONTAINER_USER="" MINICONTAINER_EXTRAS=lab PROVISION_SHA256=""
# shellcheck source=/dev/null
. "$SETTINGS"
export MINICONTAINER_USER MINICONTAINER_EXTRAS

step=settings
started=$(date +%s)
say() { step=$1; shift; printf '\n==> [first-boot %ss] %s\n' "$(($(date +%s) - started))" "$*"; }
tmp=""
finish() {
  local rc=$?
  [ -z "$tmp" ] || rm -rf "$tmp"
  if [ "$rc" = 0 ]; then
    echo "minicontainer-lab: READY after $(($(date +%s) - started)) s (user $MINICONTAINER_USER;" \
      "JupyterLab on 127.0.0.1:8888, its token in $TOKEN_FILE)"
  else
    echo "minicontainer-lab: FAILED at step '$step' (exit $rc); /var/log/cloud-init-output.log has the output"
  fi
}
trap finish EXIT

retry() {  # retry CMD...: five tries 10 s apart (a cloud VM's network may come up late)
  local i
  for i in 1 2 3 4 5; do
    if "$@"; then return 0; fi
    echo "try $i of 5 failed: $*"
    [ "$i" = 5 ] || sleep 10
  done
  return 1
}

download() {  # download URL FILE, with python3 (there wherever cloud-init is: it is written in Python)
  python3 -c 'import shutil, sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=60) as r, open(sys.argv[2], "wb") as f:
    shutil.copyfileobj(r, f)' "$1" "$2"
}

fetch_tarball() {  # into $1
  local found download_to
  download_to=$tmp/checkout.tar.gz
  retry download "$SOURCE_TARBALL" "$download_to"
  mkdir "$tmp/x"
  tar -xzf "$download_to" -C "$tmp/x" --no-same-owner
  # `git archive` puts the files at the top; a forge's archive puts them in one directory (name-ref/).
  found=$(find "$tmp/x" -maxdepth 2 -name pyproject.toml -print -quit)
  [ -n "$found" ] || { echo "$SOURCE_TARBALL holds no pyproject.toml: not the minicontainer checkout"; return 1; }
  mv "$(dirname "$found")" "$1"
}

fetch_git() {  # into $1
  if ! command -v git >/dev/null; then
    timeout 900 apt-get update -q && timeout 900 apt-get install -y -q --no-install-recommends git
  fi
  git init -q "$1"
  git -C "$1" remote add origin "$SOURCE_GIT"
  # One commit, when the server lets a client ask for any ref (GitHub, GitLab); else the whole history
  # (a dumb HTTP server cannot fetch shallow: trying once is enough to know).
  if git -C "$1" fetch -q --depth 1 origin "$SOURCE_REF"; then
    git -C "$1" checkout -q FETCH_HEAD
  else
    echo "no shallow fetch of $SOURCE_REF: fetching the whole repository"
    retry git -C "$1" fetch -q origin '+refs/heads/*:refs/remotes/origin/*' '+refs/tags/*:refs/tags/*'
    git -C "$1" checkout -q "$SOURCE_REF" 2>/dev/null || git -C "$1" checkout -q "origin/$SOURCE_REF"
  fi
  echo "checked out $(git -C "$1" rev-parse HEAD)"
}

fetch_checkout() {
  if [ -f "$CHECKOUT/pyproject.toml" ]; then echo "already here: $CHECKOUT"; return; fi
  mkdir -p "$(dirname "$CHECKOUT")"
  tmp=$(mktemp -d "$(dirname "$CHECKOUT")/.first-boot.XXXXXX")
  if [ -n "$SOURCE_GIT" ]; then fetch_git "$tmp/checkout"; else fetch_tarball "$tmp/checkout"; fi
  chmod 0755 "$tmp/checkout"
  mv "$tmp/checkout" "$CHECKOUT"
  rm -rf "$tmp"; tmp=""
}

check_provision_copy() {
  # The embedded copy must be what was rendered (write_files decoded it whole), and should be the checkout's.
  local ours theirs
  ours=$(sha256sum "$HERE/provision.sh" | cut -d' ' -f1)
  [ "$ours" = "$PROVISION_SHA256" ] || { echo "the embedded provision.sh is not the one rendered ($ours)"; return 1; }
  theirs=$(sha256sum "$CHECKOUT/vagrant/provision.sh" 2>/dev/null | cut -d' ' -f1)
  if [ "$theirs" = "$ours" ]; then
    echo "the checkout's vagrant/provision.sh is the embedded one"
  else
    echo "warning: the checkout's vagrant/provision.sh differs from the user-data's; running the user-data's."
    echo "         Render the user-data from the commit the VMs fetch to keep them the same."
  fi
}

check_lab() {
  local token
  token=$(cat "$TOKEN_FILE")
  for _ in $(seq 60); do
    if curl -fsS -o /dev/null "http://127.0.0.1:8888/api/status?token=$token"; then
      echo "JupyterLab answers on 127.0.0.1:8888"; return 0
    fi
    sleep 2
  done
  echo "JupyterLab does not answer on 127.0.0.1:8888: systemctl status minicontainer-lab"; return 1
}

say fetch "the checkout into $CHECKOUT, from ${SOURCE_GIT:+$SOURCE_GIT at $SOURCE_REF}$SOURCE_TARBALL"
fetch_checkout
say provision-copy "the provisioning script"
check_provision_copy
say provision "$HERE/provision.sh $CHECKOUT (MINICONTAINER_USER=$MINICONTAINER_USER MINICONTAINER_EXTRAS=$MINICONTAINER_EXTRAS)"
"$HERE/provision.sh" "$CHECKOUT"
say lab "JupyterLab with its token"
check_lab
say doctor "minicontainer doctor"
minicontainer doctor
