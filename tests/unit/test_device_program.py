"""The v2 device program, run here by a small eBPF interpreter on every kind of access: it must
answer exactly what the rule list (and so the v1 rules) says. The kernel runs it for real in
tests/test_security.py and in the cgroup v2 VM."""

from __future__ import annotations

import struct

import pytest

from minicontainer import devices


def run(code: bytes, access: str, kind: str, major: int, minor: int) -> int:
    """Execute the program on struct bpf_cgroup_dev_ctx {access << 16 | type, major, minor}."""
    ctx = (sum(devices.ACCESS[a] for a in access) << 16 | devices.TYPE[kind], major, minor)
    regs, pc = [0] * 11, 0
    insns = [struct.unpack("<BBhi", code[i:i + 8]) for i in range(0, len(code), 8)]
    for _ in range(10_000):
        op, regs_byte, off, imm = insns[pc]
        dst, src = regs_byte & 0xF, regs_byte >> 4
        pc += 1
        if op == devices.LDX_MEM_W:
            assert src == 1 and off in (0, 4, 8)
            regs[dst] = ctx[off // 4]
        elif op == devices.MOV64_REG:
            regs[dst] = regs[src]
        elif op == devices.MOV64_IMM:
            regs[dst] = imm
        elif op == devices.AND64_IMM:
            regs[dst] &= imm
        elif op == devices.RSH64_IMM:
            regs[dst] >>= imm
        elif op == devices.JNE_IMM:
            pc += off if regs[dst] != imm else 0
        elif op == devices.JA:
            pc += off
        elif op == devices.EXIT:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")
        assert 0 <= pc < len(insns), "jumped out of the program"
    raise AssertionError("the program did not end")


def allowed_by_rules(access: str, kind: str, major: int, minor: int) -> bool:
    return any(rule.type == kind and rule.major in (None, major) and rule.minor in (None, minor)
               and set(access) <= set(rule.access) for rule in devices.ALLOWED)


CASES = [(access, kind, major, minor) for access in ("r", "w", "rw", "m", "rwm") for kind in ("c", "b")
         for major, minor in ((1, 3), (1, 9), (1, 11), (5, 0), (5, 1), (5, 2), (136, 4), (8, 0), (254, 0), (10, 200))]


@pytest.mark.parametrize("access, kind, major, minor", CASES)
def test_the_program_answers_as_the_rules_do(access, kind, major, minor):
    code = devices.assemble(devices.program())
    assert run(code, access, kind, major, minor) == int(allowed_by_rules(access, kind, major, minor))


def test_what_matters_most():
    code = devices.assemble(devices.program())
    assert run(code, "rw", "c", 1, 3) == 1      # /dev/null
    assert run(code, "r", "b", 8, 0) == 0       # the host's disk: no
    assert run(code, "m", "b", 8, 0) == 1       # ...but its node may be made
    assert run(code, "rw", "c", 5, 1) == 0      # the host's console: no
    assert run(code, "rw", "c", 136, 7) == 1    # a pty


def test_the_v1_rules_are_the_same_list():
    assert [r.v1() for r in devices.ALLOWED][:2] == ["c 1:3 rwm", "c 1:5 rwm"]
    assert "c *:* m" in [r.v1() for r in devices.ALLOWED] and "b *:* m" in [r.v1() for r in devices.ALLOWED]
