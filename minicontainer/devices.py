"""The device cgroup: which device nodes a container may open.

A device node is only a name for a driver: whoever opens a node with block device number 8:0
reads the host's first disk, whatever the node is called, wherever it was made, in whatever
namespace. Namespaces do not cover devices. The device cgroup does: the kernel asks it on every
open and every mknod of a device node, by the device's type and numbers.

- cgroup v1: the `devices` controller. Write "a" (all) to devices.deny, then each rule of
  ALLOWED to devices.allow, as "c 1:3 rwm" (type, major:minor, access: read write mknod).
- cgroup v2 has no interface file for it. A small BPF program of type
  BPF_PROG_TYPE_CGROUP_DEVICE, attached to the cgroup with bpf(2), gets each access as
  (access, type, major, minor) and returns 1 to allow it or 0 to refuse it (EPERM). The kernel
  keeps the program while it is attached and frees it when the cgroup is removed; our file
  descriptors can close right after attaching.

Both are generated from the one list ALLOWED. It has no /dev/console (5:1): that is the host's
console, and a container with CAP_MKNOD could make a node of it; a container's /dev/console is
its pty, bind-mounted there (136:N). Making a node of any device is allowed (as in
Docker): with the device cgroup, a node for the host's disk can be made but not opened, which
is why CAP_MKNOD is harmless in the default capability list.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass

from . import kernel
from .cgroups.files import write_file
from .errors import LabError


@dataclass(frozen=True)
class DeviceRule:
    type: str            # "c" character, "b" block
    major: int | None    # None: any
    minor: int | None
    access: str          # any of "r", "w", "m" (mknod)
    name: str
    allow: bool = True   # False: takes that access away again (an OCI config's deny after its allows)

    def v1(self) -> str:
        star = lambda n: "*" if n is None else str(n)  # noqa: E731
        return f"{self.type} {star(self.major)}:{star(self.minor)} {self.access}"


ALLOWED = [
    DeviceRule("c", 1, 3, "rwm", "/dev/null"),
    DeviceRule("c", 1, 5, "rwm", "/dev/zero"),
    DeviceRule("c", 1, 7, "rwm", "/dev/full"),
    DeviceRule("c", 1, 8, "rwm", "/dev/random"),
    DeviceRule("c", 1, 9, "rwm", "/dev/urandom"),
    DeviceRule("c", 5, 0, "rwm", "/dev/tty"),
    DeviceRule("c", 5, 2, "rwm", "/dev/ptmx"),
    DeviceRule("c", 136, None, "rwm", "/dev/pts/*: the container's own pseudo-terminals"),
    DeviceRule("c", None, None, "m", "mknod of any character device (opening it is refused)"),
    DeviceRule("b", None, None, "m", "mknod of any block device (opening it is refused)"),
]


# -- cgroup v1 ------------------------------------------------------------------------------

def write_v1_rules(directory: str, rules: list[DeviceRule] = ALLOWED) -> None:
    """devices.deny "a", then one devices.allow line per rule."""
    write_file(os.path.join(directory, "devices.deny"), "a")
    for rule in rules:  # in order: a later deny takes back what an earlier allow gave
        write_file(os.path.join(directory, "devices.allow" if rule.allow else "devices.deny"), rule.v1())


# -- cgroup v2: the BPF program ---------------------------------------------------------------

# struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }, where access_type is
# (access << 16) | type: <linux/bpf.h>.
ACCESS = {"m": 1, "r": 2, "w": 4}       # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE
TYPE = {"b": 1, "c": 2}                 # BPF_DEVCG_DEV_BLOCK, _CHAR

# Opcodes of the few eBPF instructions used (<linux/bpf_common.h>, <linux/bpf.h>).
LDX_MEM_W = 0x61    # dst = *(u32 *)(src + off)
MOV64_REG = 0xBF    # dst = src
MOV64_IMM = 0xB7    # dst = imm
AND64_IMM = 0x57    # dst &= imm
RSH64_IMM = 0x77    # dst >>= imm
JNE_IMM = 0x55      # if dst != imm: jump by off
JA = 0x05           # jump by off
EXIT = 0x95         # return r0


@dataclass
class Insn:
    code: int
    dst: int = 0
    src: int = 0
    off: int | str = 0  # a label, until assemble() resolves it
    imm: int = 0
    text: str = ""      # the instruction as a reader writes it


def program(rules: list[DeviceRule] = ALLOWED) -> list[Insn | str]:
    """The device program as instructions and labels: one block per rule, first match allows. With deny rules
    (an OCI config's), the last rule that matches decides, as v1's files do: the blocks go last rule first."""
    denies = any(not rule.allow for rule in rules)
    rules = list(reversed(rules)) if denies else rules
    out: list[Insn | str] = [
        Insn(LDX_MEM_W, 2, 1, 0, text="r2 = ctx->access_type"),
        Insn(MOV64_REG, 3, 2, text="r3 = r2"),
        Insn(AND64_IMM, 3, imm=0xFFFF, text="r3 &= 0xffff          ; device type: 1 block, 2 char"),
        Insn(RSH64_IMM, 2, imm=16, text="r2 >>= 16             ; access: 1 mknod, 2 read, 4 write"),
        Insn(LDX_MEM_W, 4, 1, 4, text="r4 = ctx->major"),
        Insn(LDX_MEM_W, 5, 1, 8, text="r5 = ctx->minor"),
    ]
    for i, rule in enumerate(rules):
        skip = f"rule{i + 1}"
        out.append(f"rule{i}")
        out.append(Insn(JNE_IMM, 3, off=skip, imm=TYPE[rule.type],
                        text=f"if r3 != {TYPE[rule.type]} goto {skip}   ; {rule.v1()}: {rule.name}"))
        if rule.major is not None:
            out.append(Insn(JNE_IMM, 4, off=skip, imm=rule.major, text=f"if r4 != {rule.major} goto {skip}"))
        if rule.minor is not None:
            out.append(Insn(JNE_IMM, 5, off=skip, imm=rule.minor, text=f"if r5 != {rule.minor} goto {skip}"))
        if not rule.allow:  # matches if any access asked for is one it takes away
            out += [Insn(MOV64_REG, 6, 2, text="r6 = r2"),
                    Insn(AND64_IMM, 6, imm=sum(ACCESS[a] for a in rule.access), text="r6 &= what it denies"),
                    Insn(JNE_IMM, 6, off="deny", imm=0, text="if r6 != 0 goto deny")]
            out.append(Insn(JA, off=skip, text=f"goto {skip}"))
            continue
        not_granted = 7 & ~sum(ACCESS[a] for a in rule.access)
        if not_granted:
            out += [Insn(MOV64_REG, 6, 2, text="r6 = r2"),
                    Insn(AND64_IMM, 6, imm=not_granted, text=f"r6 &= {not_granted}              ; asked for "
                                                             "more than the rule grants?"),
                    Insn(JNE_IMM, 6, off=skip, imm=0, text=f"if r6 != 0 goto {skip}")]
        out.append(Insn(JA, off="allow", text="goto allow"))
    out += [f"rule{len(rules)}"] + (["deny"] if denies else []) + [
            Insn(MOV64_IMM, 0, imm=0, text="r0 = 0                ; no rule matched: refuse (EPERM)"),
            Insn(EXIT, text="exit"),
            "allow",
            Insn(MOV64_IMM, 0, imm=1, text="r0 = 1                ; allow"),
            Insn(EXIT, text="exit")]
    return out


def assemble(lines: list[Insn | str]) -> bytes:
    """Resolve labels to relative jumps; pack struct bpf_insn {u8 code; u8 dst:4, src:4; s16 off; s32 imm}."""
    where, pc = {}, 0
    for line in lines:
        if isinstance(line, str):
            where[line] = pc
        else:
            pc += 1
    code, pc = b"", 0
    for line in lines:
        if isinstance(line, Insn):
            off = where[line.off] - pc - 1 if isinstance(line.off, str) else line.off
            code += struct.pack("<BBhi", line.code, line.src << 4 | line.dst, off, line.imm)
            pc += 1
    return code


def listing(rules: list[DeviceRule] = ALLOWED) -> str:
    """The program as a reader would write it, one numbered instruction a line."""
    text, pc = [], 0
    for line in program(rules):
        if isinstance(line, str):
            text.append(f"{line}:")
        else:
            text.append(f"  {pc:3}: {line.text}")
            pc += 1
    return "\n".join(text)


# bpf(2): commands and the parts of union bpf_attr they use.
BPF_PROG_LOAD, BPF_PROG_ATTACH, BPF_PROG_GET_NEXT_ID, BPF_PROG_GET_FD_BY_ID = 5, 8, 11, 13
BPF_OBJ_GET_INFO_BY_FD, BPF_PROG_QUERY = 15, 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6               # the attach type
BPF_F_ALLOW_MULTI = 2               # programs above us keep running too: ours can only refuse more
PROGRAM_NAME = b"mc_devices"        # shown by `bpftool prog`


class _ProgLoad(ctypes.Structure):
    _fields_ = [("prog_type", ctypes.c_uint32), ("insn_cnt", ctypes.c_uint32), ("insns", ctypes.c_uint64),
                ("license", ctypes.c_uint64), ("log_level", ctypes.c_uint32), ("log_size", ctypes.c_uint32),
                ("log_buf", ctypes.c_uint64), ("kern_version", ctypes.c_uint32), ("prog_flags", ctypes.c_uint32),
                ("prog_name", ctypes.c_char * 16)]


class _ProgAttach(ctypes.Structure):
    _fields_ = [("target_fd", ctypes.c_uint32), ("attach_bpf_fd", ctypes.c_uint32),
                ("attach_type", ctypes.c_uint32), ("attach_flags", ctypes.c_uint32)]


class _ProgQuery(ctypes.Structure):
    _fields_ = [("target_fd", ctypes.c_uint32), ("attach_type", ctypes.c_uint32), ("query_flags", ctypes.c_uint32),
                ("attach_flags", ctypes.c_uint32), ("prog_ids", ctypes.c_uint64), ("prog_cnt", ctypes.c_uint32)]


class _ById(ctypes.Structure):
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32)]


class _InfoByFd(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


class _ProgInfo(ctypes.Structure):
    """The start of struct bpf_prog_info, up to the program's name."""
    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("tag", ctypes.c_uint8 * 8),
                ("jited_prog_len", ctypes.c_uint32), ("xlated_prog_len", ctypes.c_uint32),
                ("jited_prog_insns", ctypes.c_uint64), ("xlated_prog_insns", ctypes.c_uint64),
                ("load_time", ctypes.c_uint64), ("created_by_uid", ctypes.c_uint32), ("nr_map_ids", ctypes.c_uint32),
                ("map_ids", ctypes.c_uint64), ("name", ctypes.c_char * 16)]


def _bpf(command: int, attr: ctypes.Structure) -> tuple[int, int]:
    """bpf(command, &attr, sizeof attr): (result, errno)."""
    result = kernel.libc.syscall(kernel.syscall_number("bpf"), command, ctypes.byref(attr), ctypes.sizeof(attr))
    return result, (ctypes.get_errno() if result < 0 else 0)


def _bpf_error(command: str, err: int, target: str = "") -> LabError:
    causes = {errno.EPERM: "not root (loading and attaching BPF programs needs CAP_SYS_ADMIN or CAP_BPF), or a "
                           "program attached above this cgroup does not allow others below it",
              errno.EINVAL: "this kernel has no cgroup BPF (CONFIG_CGROUP_BPF) or rejected the program",
              errno.ENOSYS: "this kernel has no bpf(2) system call (CONFIG_BPF_SYSCALL)",
              errno.EBADF: "the cgroup directory is not on a cgroup2 filesystem"}
    return LabError(f"bpf({command}) failed{target}: {errno.errorcode.get(err, err)} ({os.strerror(err)})",
                    causes.get(err, "see bpf(2)"), "run `minicontainer doctor`; without a device cgroup, drop "
                    "mknod from the capabilities and set Security(devices=False)")


def load_program(rules: list[DeviceRule] = ALLOWED) -> int:
    """BPF_PROG_LOAD: the kernel's verifier checks the program; returns its fd."""
    code = assemble(program(rules))
    insns = ctypes.create_string_buffer(code, len(code))
    license_text = ctypes.create_string_buffer(b"MIT")
    log = ctypes.create_string_buffer(1 << 16)
    attr = _ProgLoad(prog_type=BPF_PROG_TYPE_CGROUP_DEVICE, insn_cnt=len(code) // 8,
                     insns=ctypes.addressof(insns), license=ctypes.addressof(license_text), log_level=1,
                     log_size=len(log), log_buf=ctypes.addressof(log), prog_name=PROGRAM_NAME)
    fd, err = _bpf(BPF_PROG_LOAD, attr)
    if fd < 0:
        error = _bpf_error("BPF_PROG_LOAD", err, " for the device program")
        verifier = log.value.decode(errors="replace").strip()
        if verifier:
            error.cause += f"; the verifier said: {verifier[-300:]}"
        raise error
    return fd


def attach_program(cgroup_dir: str, rules: list[DeviceRule] = ALLOWED) -> int:
    """Load the program and attach it to a cgroup2 directory (BPF_PROG_ATTACH); return its id."""
    prog_fd = load_program(rules)
    try:
        cgroup_fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            attr = _ProgAttach(target_fd=cgroup_fd, attach_bpf_fd=prog_fd, attach_type=BPF_CGROUP_DEVICE,
                               attach_flags=BPF_F_ALLOW_MULTI)
            result, err = _bpf(BPF_PROG_ATTACH, attr)
            if result < 0:
                raise _bpf_error("BPF_PROG_ATTACH", err, f" on {cgroup_dir}")
            return attached_programs(cgroup_dir)[-1]
        finally:
            os.close(cgroup_fd)
    finally:
        os.close(prog_fd)  # the cgroup holds the program now


def attached_programs(cgroup_dir: str) -> list[int]:
    """BPF_PROG_QUERY: the ids of the device programs attached to this cgroup itself."""
    ids = (ctypes.c_uint32 * 64)()
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        attr = _ProgQuery(target_fd=fd, attach_type=BPF_CGROUP_DEVICE, prog_ids=ctypes.addressof(ids), prog_cnt=64)
        result, err = _bpf(BPF_PROG_QUERY, attr)
    finally:
        os.close(fd)
    if result < 0:
        raise _bpf_error("BPF_PROG_QUERY", err, f" on {cgroup_dir}")
    return list(ids[:attr.prog_cnt])


def program_exists(prog_id: int) -> bool:
    """Is a BPF program with this id still loaded? (The kernel frees it after its cgroup is removed.)"""
    fd, err = _bpf(BPF_PROG_GET_FD_BY_ID, _ById(id=prog_id))
    if fd >= 0:
        os.close(fd)
        return True
    if err == errno.ENOENT:
        return False
    raise _bpf_error("BPF_PROG_GET_FD_BY_ID", err, f" for program {prog_id}")


def loaded_programs() -> list[int]:
    """The ids of every device program of ours the kernel holds, attached or not (a leak check)."""
    found, cursor = [], _ById(id=0)
    while True:
        result, err = _bpf(BPF_PROG_GET_NEXT_ID, cursor)  # the kernel writes the next id into cursor.next_id
        if result < 0:
            if err == errno.ENOENT:
                return found
            raise _bpf_error("BPF_PROG_GET_NEXT_ID", err)
        cursor.id = cursor.next_id
        fd, _ = _bpf(BPF_PROG_GET_FD_BY_ID, _ById(id=cursor.id))
        if fd < 0:
            continue  # freed meanwhile
        try:
            info = _ProgInfo()
            query = _InfoByFd(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
            if (_bpf(BPF_OBJ_GET_INFO_BY_FD, query)[0] == 0 and info.type == BPF_PROG_TYPE_CGROUP_DEVICE
                    and info.name == PROGRAM_NAME):
                found.append(cursor.id)
        finally:
            os.close(fd)
