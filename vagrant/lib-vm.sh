# shellcheck shell=bash
# Sourced by vagrant/acceptance.sh and vagrant/nocloud-check.sh, never run: phases that each run as
# `SCRIPT __phase NAME` under a timeout of their own, their durations, and stopping the running phase with
# everything under it. The sourcing script sets LABEL and defines its phase_NAME functions and its teardown.

say() { printf '\n=== [%s %s] %s\n' "$LABEL" "$(date +%T)" "$*"; }

durations=()
phase_pid=""

run_phase() {  # run_phase NAME TIMEOUT_SECONDS
  local t0=$SECONDS rc=0
  say "phase $1 (timeout $2s)"
  # In the background so that a Ctrl-C or TERM reaches this script at once (timeout runs in a process group
  # of its own, so it would not get the terminal's signal): the trap stops the phase, then tears down.
  timeout --kill-after=30 "$2" "$0" __phase "$1" & phase_pid=$!
  wait "$phase_pid" || rc=$?
  phase_pid=""
  printf '=== [%s] phase %s: %s in %ss\n' "$LABEL" "$1" "$([ $rc = 0 ] && echo ok || echo "FAILED rc=$rc")" \
    "$((SECONDS - t0))"
  durations+=("$1 $((SECONDS - t0))s rc=$rc")
  return $rc
}

summary() { printf '\n=== [%s] durations\n' "$LABEL"; printf '  %s\n' "${durations[@]}"; }

descendants() { local c; for c in $(pgrep -P "$1"); do echo "$c"; descendants "$c"; done; }

stop_phase() {
  # The phase and everything under it: the timeouts inside a phase put their commands in process groups of
  # their own, which a signal to the phase alone would leave running (an apt-get in a chroot holding a mount
  # that teardown removes, a vagrant command holding the domain).
  local pids alive p
  if [ -n "$phase_pid" ]; then
    pids="$phase_pid $(descendants "$phase_pid" | tr '\n' ' ')"
    # shellcheck disable=SC2086  # a list of pids
    kill -TERM $pids 2>/dev/null
    for _ in $(seq 20); do
      alive=""; for p in $pids; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
      [ -n "$alive" ] || break; sleep 0.5
    done
    # shellcheck disable=SC2086
    [ -z "$alive" ] || kill -KILL $alive 2>/dev/null
    wait "$phase_pid"
  fi
  exit 130
}
