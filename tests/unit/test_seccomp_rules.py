"""The seccomp profile as data: the allow-list's groups, what is refused, and the argument rules."""

from __future__ import annotations

import collections

from minicontainer import kernel, seccomp


def test_no_call_is_listed_twice_or_both_allowed_and_denied():
    calls = seccomp.allowed_calls()
    assert [c for c, n in collections.Counter(calls).items() if n > 1] == []
    assert not set(calls) & set(seccomp.DENIED)


def test_the_calls_that_must_not_be_on_the_allow_list():
    calls = set(seccomp.allowed_calls())
    for call in ("io_uring_setup", "io_uring_enter", "keyctl", "bpf", "init_module", "open_by_handle_at",
                 "perf_event_open", "userfaultfd", "kexec_load", "clock_settime", "reboot"):
        assert call not in calls, call


def test_every_group_says_why():
    for group, (why, calls) in seccomp.ALLOWED.items():
        assert len(why) > 20 and calls, group


def test_argument_rules_mask_32_bits_and_cover_every_namespace_flag():
    rules = seccomp.argument_rules(refuse_namespaces=True)
    ioctl = [r for r in rules if r.call == "ioctl"]
    assert {r.value for r in ioctl} == {seccomp.TIOCSTI, seccomp.TIOCLINUX}
    assert all(r.mask == 0xFFFFFFFF and r.argument == 1 for r in ioctl)
    unshare = {r.value for r in rules if r.call == "unshare"}
    clone = {r.value for r in rules if r.call == "clone"}
    assert unshare == set(seccomp.NEW_NAMESPACE_FLAGS.values())
    assert clone == unshare - {kernel.CLONE_NEWTIME}  # in clone's flags that bit is the exit signal's
    assert [r.errno for r in rules if r.call == "clone3"] == [38]  # ENOSYS: libc falls back to clone
    assert {"setns", "mount", "fsopen", "move_mount", "open_tree"} <= {r.call for r in rules}


def test_with_cap_sys_admin_only_the_ioctls_are_refused():
    assert {r.call for r in seccomp.argument_rules(refuse_namespaces=False)} == {"ioctl"}


def test_a_policy_is_compiled_once_into_a_program_that_checks_the_architecture_first():
    import struct
    programs = seccomp.compiled("allowlist", True)
    assert seccomp.compiled("allowlist", True) is programs  # the second container's start compiles nothing
    assert seccomp.compiled("allowlist", True, ("keyctl",)) != programs  # another policy, another program
    for program in programs:
        assert program and len(program) % seccomp.BPF_INSTRUCTION == 0
        code, _, _, k = struct.unpack("HBBI", program[:8])
        # BPF_LD | BPF_W | BPF_ABS of seccomp_data.arch (offset 4): a filter that skipped it could be
        # bypassed through another architecture's call numbers.
        assert (code, k) == (0x20, 4)
