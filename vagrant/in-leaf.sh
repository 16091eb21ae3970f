#!/bin/sh
# in-leaf COMMAND [ARG...]: move this process into the child cgroup "lab" of its own cgroup, then exec COMMAND.
#
# Run from a systemd unit with Delegate=yes (the lab service, or `systemd-run -p Delegate=yes`). cgroup v2
# lets a cgroup enable controllers for its children only while it holds no processes itself; systemd puts
# the unit's processes straight into the unit's cgroup, so we step down into a leaf and leave the unit's
# cgroup free for minicontainer/ (where the runtime puts containers, with memory, cpu, pids and io on).
# systemd 254+ can do this itself (DelegateSubgroup=lab); Debian 12 has 252, so the lab does it here.
set -eu
own=$(sed -n 's/^0:://p' /proc/self/cgroup)
[ -n "$own" ] || { echo "in-leaf: not on cgroup v2 (no 0:: line in /proc/self/cgroup)" >&2; exec "$@"; }
dir=/sys/fs/cgroup$own
if [ "${own##*/}" != lab ]; then
  mkdir -p "$dir/lab"
  echo $$ > "$dir/lab/cgroup.procs"
fi
exec "$@"
