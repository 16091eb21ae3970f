"""The escape and abuse suite: each attack runs as a default container's own payload and must be
contained; with only its defence switched off it must get through, as an escape or as something the
kernel allowed (or the table says what else stops it, in general or on this host). The host must be
unchanged afterwards."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from minicontainer.container import Container
from minicontainer.errors import LabError
from minicontainer.lab import attacks, payloads
from minicontainer.security import Security
from minicontainer.spec import ContainerSpec
from minicontainer.stage import Stage

OUTCOMES: list[attacks.Outcome] = []
HOST_SETTINGS = [p for p in ("/proc/sys/kernel/core_pattern", "/proc/sys/kernel/hostname",
                              "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/modprobe") if os.path.exists(p)]


@pytest.fixture(scope="module")
def fixtures():
    before = {path: open(path).read() for path in HOST_SETTINGS}
    sentinel = subprocess.Popen(["sleep", "600"])  # kill -9 -1 inside must not reach it
    with attacks.host_fixtures() as fx:
        yield fx
    assert sentinel.poll() is None, "a host process was killed from inside a container"
    sentinel.kill()
    sentinel.wait()
    assert {path: open(path).read() for path in HOST_SETTINGS} == before, "a host setting changed"
    assert socket.gethostname() == before["/proc/sys/kernel/hostname"].strip()


@pytest.mark.parametrize("attack", attacks.ATTACKS, ids=lambda a: a.name)
def test_contained_with_the_defaults(image, fixtures, attack):
    outcome = attacks.run_attack(attack, defended=True, fixtures=fixtures)
    OUTCOMES.append(outcome)
    assert outcome.verdict == "contained", f"{attack.name} got through: {outcome.evidence}"


@pytest.mark.parametrize("attack", attacks.ATTACKS, ids=lambda a: a.name)
def test_gets_through_without_its_defence(image, fixtures, attack):
    outcome = attacks.run_attack(attack, defended=False, fixtures=fixtures)
    OUTCOMES.append(outcome)
    if attack.also or attack.blocked_by_host():  # another defence still stands, and the table says which
        assert outcome.verdict == "contained", outcome.evidence
    else:
        assert outcome.got_through, f"switching off {attack.defence} did not let {attack.name} through: " \
                                    f"{outcome.evidence} (is it really the defence?)"


@pytest.mark.parametrize("attack", [a for a in attacks.ATTACKS if a.also], ids=lambda a: a.name)
def test_gets_through_with_the_other_defence_off_too(image, fixtures, attack):
    """Where one defence off is not enough, both off must be: else the table's 'also' is not the reason."""
    outcome = attacks.run_attack(attack, defended=False, fixtures=fixtures, **attack.also_off)
    assert outcome.got_through or attack.blocked_by_host(), f"{attack.name} with {attack.defence} and " \
        f"{attack.also} off: {outcome.evidence}"


def test_kill_all_outside_a_pid_namespace_sends_only_signal_0(image, fixtures):
    """However the PID namespace is switched off (here as a lesson does, by a spec field), kill -1
    from the host's PID namespace only checks: the sentinel of the fixture must survive."""
    attack = attacks.BY_NAME["kill-all"]
    outcome = attacks.run_attack(attack, fixtures=fixtures, namespaces=attack.undefended["namespaces"])
    assert outcome.escaped and "may be signalled" in outcome.evidence, outcome.evidence


def test_a_field_that_is_no_spec_field_is_a_clear_error(image, fixtures):
    with pytest.raises(LabError, match="no ContainerSpec field secomp"):
        attacks.run_attack(attacks.BY_NAME["keyctl"], fixtures=fixtures, secomp=None)


def test_exec_gets_the_same_defences_as_init(image):
    with Container.start(ContainerSpec(image, ["sleep", "60"])) as box:
        def status(pid_path):
            return {k: v for k, _, v in (line.partition(":\t") for line in open(pid_path).read().splitlines())}
        init = status(f"/proc/{box.pid}/status")
        out = box.exec(["sh", "-c", "cat /proc/self/status"]).stdout
        execd = {k: v for k, _, v in (line.partition(":\t") for line in out.splitlines())}
        for key in ("CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters"):
            assert execd[key] == init[key], key
        assert init["NoNewPrivs"] == "1" and init["Seccomp"] == "2" and init["Seccomp_filters"] == "2"
        assert box.cgroup.name in open(f"/proc/{box.pid}/cgroup").read()


def watch_pid_1_once():
    """Run in PID 1 by stage.call: the payload, forked from it, looks once at /proc/*/exe."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.dup2(write_end, 1)
        os.execv("/attacks", ["/attacks", "runtime-exe", "once"])
    os.close(write_end)
    output = b""
    while chunk := os.read(read_end, 4096):
        output += chunk
    os.waitpid(child, 0)
    return output.decode()


@pytest.mark.parametrize("non_dumpable", [True, False], ids=["defended", "undefended"])
def test_pid_1_before_its_exec_is_out_of_reach(image, non_dumpable):
    """PID 1 runs the host's Python until it execs: in a stage, a program that a learner's function starts
    inside (here with the container's own capabilities already set) can open /proc/1/exe only when
    PID 1 is dumpable."""
    spec = ContainerSpec(image, ["sleep", "60"], binds=[(payloads.build("attacks"), "/attacks", True)],
                         security=Security(non_dumpable=non_dumpable))
    with Stage(spec) as stage:
        stage.run_until("capabilities")
        said = stage.call(watch_pid_1_once).splitlines()[-1]
    if non_dumpable:
        assert said.startswith("CONTAINED") and "refused" in said, said
    else:
        assert said.startswith("ESCAPED") and "/proc/1/exe" in said, said


def test_print_the_table(capsys):
    assert OUTCOMES, "run the whole module to see the table"
    with capsys.disabled():
        print("\n" + attacks.table(OUTCOMES))
