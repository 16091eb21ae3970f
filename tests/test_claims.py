"""minicontainer.lab.claims, notebook 07's measurements, on the real kernel."""

from __future__ import annotations

import os
import subprocess

import pytest

from minicontainer import kernel
from minicontainer.container import Container, run
from minicontainer.errors import LabError
from minicontainer.lab import claims
from minicontainer.spec import ContainerSpec


def test_parse_pressure_reads_the_totals():
    text = ("some avg10=1.50 avg60=0.20 avg300=0.00 total=123456\n"
            "full avg10=0.00 avg60=0.00 avg300=0.00 total=7\n")
    assert claims.parse_pressure(text) == {"some": 123456, "full": 7}


def test_cpu_weight_lands_in_the_kernels_file(image):
    with Container.start(ContainerSpec(image, ["sleep", "60"])) as box:
        written = claims.set_cpu_weight(box, 500)
        with open(written) as f:
            value = int(f.read())
        # v2 keeps the weight as given; v1 stores shares (the same ratio to its default of 1024)
        assert value == (500 if written.endswith("cpu.weight") else 5120)
        with pytest.raises(LabError, match="out of range"):
            claims.set_cpu_weight(box, 0)


def test_memory_guarantees_are_the_kernels_defaults(image):
    with Container.start(ContainerSpec(image, ["sleep", "60"], memory="32M")) as box:
        found = claims.memory_guarantees(box)
        has_v2_memory = os.path.exists(os.path.join(box.cgroup.dirs["memory"], "memory.max"))
    assert found == ({"memory.min": 0, "memory.low": 0} if has_v2_memory else {})


def test_a_namespace_is_in_use_only_while_a_process_is_in_it(image):
    box = Container.start(ContainerSpec(image, ["sleep", "60"]))
    link = os.readlink(f"/proc/{box.pid}/ns/uts")
    assert claims.namespace_in_use(link)
    box.stop(grace=0.2)
    assert not claims.namespace_in_use(link)


@pytest.fixture
def disk_dir(tmp_path):
    """A directory on a fresh ext4 on a loop device: a filesystem whose clean cached pages the kernel can drop.
    tmp_path may be a tmpfs (Debian 13's /tmp), whose pages are the file itself and never drop."""
    image, mounted = tmp_path / "disk.img", tmp_path / "disk"
    mounted.mkdir()
    with open(image, "wb") as f:
        f.truncate(64 * 2**20)
    subprocess.run(["mkfs.ext4", "-q", str(image)], check=True, timeout=60)
    subprocess.run(["mount", "-o", "loop", str(image), str(mounted)], check=True, timeout=60)  # autoclear loop
    try:
        yield mounted
    finally:
        subprocess.run(["umount", str(mounted)], check=True, timeout=60)


def test_a_read_inside_a_container_fills_the_hosts_page_cache(image, disk_dir):
    shared = disk_dir / "shared"
    shared.mkdir()
    blob = str(shared / "blob")
    with open(blob, "wb") as f:
        f.write(os.urandom(2**20))
        os.fsync(f.fileno())
    claims.drop_from_page_cache(blob)
    assert claims.cached_bytes(blob) == 0
    run(ContainerSpec(image, ["sh", "-c", "cat /data/blob > /dev/null"], binds=[(str(shared), "/data", True)]))
    assert claims.cached_bytes(blob) == 2**20


def test_cached_pages_are_counted_through_an_overlay(disk_dir):
    """A file read through overlayfs is cached as its real file's pages: the count must reach them (cachestat(2)
    on the overlay's own file, what fincore 2.40+ asks, says 0 there), and dropping them must be seen."""
    for name in ("lower", "upper", "work", "merged"):
        (disk_dir / name).mkdir()
    merged = str(disk_dir / "merged")
    kernel.mount("overlay", merged, "overlay", 0,
                 f"lowerdir={disk_dir / 'lower'},upperdir={disk_dir / 'upper'},workdir={disk_dir / 'work'}")
    try:
        blob = os.path.join(merged, "blob")
        with open(blob, "wb") as f:
            f.write(os.urandom(4 * 2**20))
            os.fsync(f.fileno())
        claims.drop_from_page_cache(blob)
        assert claims.cached_bytes(blob) == 0
        with open(blob, "rb") as f:
            f.read()
        assert claims.cached_bytes(blob) == 4 * 2**20
    finally:
        kernel.umount2(merged, kernel.MNT_DETACH)


def test_memory_cgroup_is_the_containers(image):
    with Container.start(ContainerSpec(image, ["sleep", "60"])) as box:
        assert claims.memory_cgroup(box.pid).endswith("/" + box.cgroup.name)
        assert not claims.memory_cgroup(os.getpid()).endswith("/" + box.cgroup.name)
