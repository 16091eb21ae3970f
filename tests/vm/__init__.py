"""The cgroup v2 VM harness: harness.py (host side) and init.sh (the guest's init)."""
