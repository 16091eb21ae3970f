"""minicontainer.lab.claims, notebook 07's measurements, on the real kernel."""

from __future__ import annotations

import os

import pytest

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


def test_a_read_inside_a_container_fills_the_hosts_page_cache(image):
    image_file = os.path.join(image, "etc/hosts")
    claims.drop_from_page_cache(image_file)
    assert claims.cached_bytes(image_file) == 0
    run(ContainerSpec(image, ["cat", "/etc/hosts"]))
    assert claims.cached_bytes(image_file) > 0


def test_memory_cgroup_is_the_containers(image):
    with Container.start(ContainerSpec(image, ["sleep", "60"])) as box:
        assert claims.memory_cgroup(box.pid).endswith("/" + box.cgroup.name)
        assert not claims.memory_cgroup(os.getpid()).endswith("/" + box.cgroup.name)
