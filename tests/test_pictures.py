"""The lab's pictures, drawn from real containers: each shows what the kernel holds, read independently here."""

from __future__ import annotations

import os
import subprocess
import time
import xml.etree.ElementTree as ET

import pytest
from conftest import STARTUP_WAIT

from minicontainer import network
from minicontainer.container import Container
from minicontainer.errors import LabError
from minicontainer.lab import pictures
from minicontainer.lab.samples import sample_cpu, sample_memory
from minicontainer.spec import ContainerSpec

MIB = 1 << 20


def drawn_text(picture) -> str:
    """All the words of the picture; parsing also proves the SVG is well formed."""
    root = ET.fromstring(picture.svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert picture._repr_svg_() == picture.svg and picture.svg in picture._repr_html_()
    return " ".join(root.itertext())


def wait_for(condition, what: str):
    deadline = time.monotonic() + STARTUP_WAIT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def root_overlay_options(pid: int) -> dict:
    """The super options of the overlay mounted at / in pid's mount namespace, parsed here on its own."""
    with open(f"/proc/{pid}/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if left.split()[4] == "/" and right.split()[0] == "overlay":
                return dict(option.partition("=")[::2] for option in right.split()[2].split(","))
    raise AssertionError(f"no overlay at / in /proc/{pid}/mountinfo")


def test_overlay_layers_show_mountinfo_layers_and_where_a_file_comes_from(image):
    command = ["sh", "-c", "echo changed > /etc/motd; rm /bin/ls; touch /ready; sleep 30"]
    with Container.start(ContainerSpec(image, command)) as box:
        wait_for(lambda: os.path.exists(os.path.join(box.upper_dir, "ready")), "the container's writes")
        options = root_overlay_options(box.pid)
        written = pictures.overlay_layers(box.pid, file="/etc/motd")
        text = drawn_text(written)
        # The layers are the kernel's: the upper and lower dirs the mount shows in mountinfo.
        assert written.facts["upperdir"] == options["upperdir"] and options["upperdir"] in text
        assert written.facts["lowerdir"] == options["lowerdir"].split(":") and options["lowerdir"] in text
        # Writing copied the file up: it now comes from the upper dir; an untouched one from the image.
        assert written.facts["file_layer"] == options["upperdir"]
        assert pictures.overlay_layers(box.pid, file="/etc/passwd").facts["file_layer"] == options["lowerdir"]
        # rm of an image file left a whiteout in the upper dir: shown as deleted there.
        removed = pictures.overlay_layers(box.pid, file="/bin/ls")
        assert removed.facts["file_whiteout"] and "deleted here (whiteout)" in drawn_text(removed)
        assert "deleted /bin/ls" in text
        with pytest.raises(LabError, match="has no overlay mount at /proc"):
            pictures.overlay_layers(box.pid, mount_point="/proc")  # (a host's own / may be an overlay: live media)
        box.stop(grace=0.1)
    with pytest.raises(LabError, match="is not a process ID"):
        pictures.overlay_layers("box")


@pytest.fixture
def shared_mount(tmp_path):
    """A tmpfs made shared (its own peer group) in a mount namespace of its own, and a way to copy that
    namespace with a chosen propagation. Every process gets SIGKILL if the test dies (pdeathsig), and
    the mounts go with their namespaces: nothing is mounted in the test's own."""
    target = str(tmp_path / "shared")
    os.mkdir(target)
    started = []

    def start(*command: str) -> int:
        child = subprocess.Popen(["setpriv", "--pdeathsig", "KILL", *command])
        started.append(child)
        # Each command ends by exec'ing sleep: its name says the mount work before it is done.
        wait_for(lambda: open(f"/proc/{child.pid}/comm").read().strip() == "sleep", f"{command[0]} to finish")
        return child.pid
    try:
        origin = start("unshare", "-m", "--propagation=private", "sh", "-c",
                       f"mount -t tmpfs -o size=1m lab-shared {target} && mount --make-shared {target} "
                       "&& exec sleep 30")

        def copy_with(propagation: str) -> int:
            # unshare(1) sets the propagation of every mount it copies into the new namespace.
            return start("nsenter", "-t", str(origin), "-m", "unshare", "-m", f"--propagation={propagation}",
                         "sleep", "30")
        yield target, origin, copy_with
    finally:
        for child in started:
            child.kill()
            child.wait()


def peer_group(pid: int, target: str) -> str:
    with open(f"/proc/{pid}/mountinfo") as f:
        line = next(line for line in f if line.split()[4] == target)
    return " ".join(field for field in line.partition(" - ")[0].split()[6:] if ":" in field) or "private"


def test_peer_groups_link_the_mounts_the_kernel_propagates_between(shared_mount):
    target, origin, copy_with = shared_mount
    peer, slave, private = (copy_with(p) for p in ("unchanged", "slave", "private"))
    group = peer_group(origin, target)
    assert group.startswith("shared:")
    picture = pictures.peer_groups([origin, peer, slave], mount_points=[target])
    links = {(link["kind"], link["from"][0], link["to"][0]) for link in picture.facts["links"]}
    # The copy made with propagation unchanged is in the same peer group; the slave's copy receives from it.
    assert links == {("peer", origin, peer), ("master", peer, slave)}
    assert {link["group"] for link in picture.facts["links"]} == {int(group.split(":")[1])}
    slave_field = "master:" + group.split(":")[1]
    assert peer_group(slave, target) == slave_field
    text = drawn_text(picture)
    assert group in text and slave_field in text
    # A private copy belongs to no peer group: nothing propagates, and no line is drawn.
    alone = pictures.peer_groups([origin, private], mount_points=[target])
    assert alone.facts["links"] == [] and "no links" in drawn_text(alone)
    assert pictures.mount_propagation(private, mount_points=[target]).facts["mounts"][private] == [(target, "private")]


def test_packet_path_follows_eth0_to_its_host_veth_bridge_and_nat_rule(image):
    with Container.start(ContainerSpec(image, ["sleep", "30"], network="bridge")) as box:
        picture = pictures.packet_path(box.pid)
        facts, text = picture.facts, drawn_text(picture)
        assert facts["interface"] == "eth0" and facts["addresses"][0].split("/")[0] in text
        # The host end found by ifindex is the veth whose link (iflink, in sysfs) is eth0's ifindex inside,
        # and sysfs names its bridge.
        host_end = facts["host_peer"]
        with open(f"/sys/class/net/{host_end}/iflink") as f:
            assert int(f.read()) == facts["ifindex"]
        assert os.path.basename(os.readlink(f"/sys/class/net/{host_end}/master")) == facts["bridge"] == network.BRIDGE
        assert host_end in text and network.BRIDGE in text
        # The lab's own rules, as the firewall tool lists them (nft or iptables; iptables-nft shows in both).
        ruleset = network.firewall().show()
        assert any(rule["rule"] in ruleset for rule in facts["nat"]) and facts["nat"][0]["rule"] in text
        with open("/proc/sys/net/ipv4/ip_forward") as f:
            assert f"ip_forward = {f.read().strip()}" in text
        box.stop(grace=0.1)  # sleep as PID 1 ignores SIGTERM
    # Without network="bridge" the namespace has only lo: no way out, no peer, no NAT rule.
    with Container.start(ContainerSpec(image, ["sleep", "30"])) as box:
        closed = pictures.packet_path(box.pid)
        assert closed.facts["host_peer"] is None and closed.facts["nat"] == []
        assert "no interface with an address" in drawn_text(closed)
        with pytest.raises(LabError, match="is not an IP address"):
            pictures.packet_path(box.pid, destination="example.org")
        box.stop(grace=0.1)


@pytest.mark.slow
def test_cpu_throttling_shows_throttled_periods_only_under_a_quota(image):
    busy = ["sh", "-c", "while :; do :; done"]
    with Container.start(ContainerSpec(image, busy, cpus=0.2)) as box:
        limited = pictures.cpu_throttling(sample_cpu(box, seconds=1.2, interval=0.2))
        box.stop(grace=0.1)  # a busy shell loop ignores SIGTERM as PID 1
    assert limited.facts["limit"] == pytest.approx(0.2)
    assert limited.facts["periods"] > 0 and limited.facts["throttled"] > 0 and limited.facts["throttled_ms"] > 0
    # The quota's invariant: on average at most 0.2 CPU per interval (with room for tick overrun).
    used = [i["cpus"] for i in limited.facts["intervals"]]
    assert sum(used) / len(used) <= 0.2 * 1.5, used
    assert "time spent throttled" in drawn_text(limited)
    with Container.start(ContainerSpec(image, busy)) as box:
        free = pictures.cpu_throttling(sample_cpu(box, seconds=0.8, interval=0.2))
        box.stop(grace=0.1)
    assert (free.facts["limit"], free.facts["periods"], free.facts["throttled"]) == (None, 0, 0)
    assert "never throttled" in drawn_text(free)


@pytest.mark.slow
def test_memory_over_time_climbs_to_the_limit_and_marks_the_oom_kill(image):
    """As lesson 03 draws it: memory that grows slowly enough for the samples to see it reach the limit."""
    grow = "sleep 0.3; (for i in $(seq 40); do head -c 2m /dev/zero; sleep 0.1; done) | tail > /dev/null; sleep 30"
    with Container.start(ContainerSpec(image, ["sh", "-c", grow], memory="32M")) as box:
        samples = sample_memory(box, seconds=4, interval=0.05)
        box.stop(grace=0.1)  # its PID 1 ignores SIGTERM: no need to wait the default grace
    picture = pictures.memory_over_time(samples)
    assert picture.facts["limit"] == 32 * MIB
    assert picture.facts["oom_kills"] and "OOM kill" in drawn_text(picture)
    assert 24 * MIB <= picture.facts["peak"] <= 32 * MIB, "the line must be seen to near the limit"
    assert picture.facts["kernel_peak"] is None or picture.facts["kernel_peak"] <= 32 * MIB
    hog = ["sh", "-c", "sleep 0.3; dd if=/dev/zero of=/dev/null bs=64M count=1; sleep 30"]
    # With no limit the same 64 MiB buffer fits: the kernel kills nothing.
    with Container.start(ContainerSpec(image, hog)) as box:
        free = pictures.memory_over_time(sample_memory(box, seconds=0.8, interval=0.05))
        box.stop(grace=0.1)
    assert free.facts["limit"] is None and free.facts["oom_kills"] == []
    assert "no OOM kill while sampling" in drawn_text(free)


def test_samplers_stop_when_the_container_ends(image):
    with Container.start(ContainerSpec(image, ["sleep", "0.3"])) as box:
        samples = sample_cpu(box, seconds=60, interval=0.1)
    assert "container ended" in samples.stopped and len(samples) < 60 / 0.1


def test_bad_input_gets_a_clear_error():
    cases = [(lambda: sample_cpu(None, seconds=0), "cannot sample for 0.0 s"),
             (lambda: sample_memory(None, seconds="soon"), "must be numbers"),
             (lambda: sample_cpu("/nonexistent/cgroup"), "cannot find a cgroup"),
             (lambda: pictures.cpu_throttling([]), "expected the result of sample_cpu"),
             (lambda: pictures.peer_groups([]), "no process given"),
             (lambda: pictures.packet_path(2 ** 22 + 1), "does not exist")]
    for make, words in cases:
        with pytest.raises(LabError) as caught:
            make()
        assert words in str(caught.value)
