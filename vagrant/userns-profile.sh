#!/usr/bin/env bash
# Let the lab's rootless lesson make user namespaces where AppArmor restricts them (Ubuntu 23.10 and later),
# without switching the restriction off for the whole host: a copy of the distribution's Python at
# /opt/minicontainer/userns/python3 and an AppArmor profile (apparmor/minicontainer-userns) that allows user
# namespaces to that path alone. provision.sh runs this; it is also safe to run by hand, and twice.
#
#   userns-profile.sh           install where the restriction exists, else say there is nothing to do
#   userns-profile.sh --always  install wherever AppArmor runs (the tests try the profile on Debian 13)
#   userns-profile.sh --remove  unload the profile and remove what this script installed
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
PROFILE=minicontainer-userns
INTERPRETER=/opt/minicontainer/userns/python3
RESTRICT=/proc/sys/kernel/apparmor_restrict_unprivileged_userns
# Written by provisioning before this profile existed: the host-wide switch this script replaces.
OLD_SYSCTL=/etc/sysctl.d/60-minicontainer-userns.conf
die() { printf 'userns-profile: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root: it loads an AppArmor profile"
mode=${1:-}
case "$mode" in ""|--always|--remove) ;; *) die "unknown option '$mode' (use --always or --remove)" ;; esac

if [ "$mode" = --remove ]; then
  if [ -e "/etc/apparmor.d/$PROFILE" ] && command -v apparmor_parser >/dev/null; then
    apparmor_parser -R "/etc/apparmor.d/$PROFILE" 2>/dev/null || true  # not loaded: nothing to unload
  fi
  rm -f "/etc/apparmor.d/$PROFILE" "$INTERPRETER"
  rmdir "$(dirname "$INTERPRETER")" 2>/dev/null || true
  echo "removed the $PROFILE profile and $INTERPRETER"
  exit 0
fi

if [ ! -e "$RESTRICT" ] && [ "$mode" != --always ]; then
  echo "no AppArmor restriction of user namespaces on this kernel: nothing to do"
  exit 0
fi
[ "$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null)" = Y ] ||
  die "AppArmor is not enabled on this kernel, so no profile can be loaded"
command -v apparmor_parser >/dev/null || die "apparmor_parser is missing: apt-get install apparmor"

# A copy, not a link: AppArmor picks a profile by the path of the file that is executed, and a symlink
# would resolve to /usr/bin/python3.X, which every Python program on the host runs.
python=$(readlink -f /usr/bin/python3)
install -D -m 0755 "$python" "$INTERPRETER.new"
mv -f "$INTERPRETER.new" "$INTERPRETER"
install -m 0644 "$HERE/apparmor/$PROFILE" "/etc/apparmor.d/$PROFILE"
apparmor_parser -r -W "/etc/apparmor.d/$PROFILE" ||
  die "apparmor_parser could not load /etc/apparmor.d/$PROFILE (its error is above)"

if [ -e "$OLD_SYSCTL" ]; then
  rm -f "$OLD_SYSCTL"
  [ -e "$RESTRICT" ] && echo 1 > "$RESTRICT"  # the distribution's default, which the old file had lifted
  echo "removed $OLD_SYSCTL: the host-wide restriction is back on"
fi
state="no restriction on this kernel"
[ -e "$RESTRICT" ] && state="kernel.apparmor_restrict_unprivileged_userns = $(cat "$RESTRICT")"
echo "user namespaces allowed to $INTERPRETER ($python) by the AppArmor profile $PROFILE; $state"
