"""How an engine's slice:prefix:name cgroupsPath names a systemd scope and where its cgroup lies, as runc reads
them (no systemd needed)."""

from __future__ import annotations

import pytest

from minicontainer.cgroups import systemd
from minicontainer.errors import LabError


@pytest.mark.parametrize(("path", "expected"), [
    ("system.slice:libpod:0123abcd", ("system.slice", "libpod-0123abcd.scope")),
    (":cri-containerd:abc", ("system.slice", "cri-containerd-abc.scope")),  # an empty slice is system.slice
    ("machine.slice::abc", ("machine.slice", "abc.scope")),                   # no prefix: the name alone
    ("user-1000.slice:podman:x.scope", ("user-1000.slice", "x.scope")),       # a name that is a scope already
])
def test_slice_prefix_name_is_a_scope_in_a_slice(path, expected):
    assert systemd.parse(path) == expected


@pytest.mark.parametrize(("path", "words"), [
    ("system.slice:libpod", "not slice:prefix:name"),
    ("system.slice:libpod:", "not slice:prefix:name"),
    ("system:libpod:abc", "is not a slice"),
    ("system.slice:lib pod:abc", "not a systemd unit name"),
])
def test_malformed_paths_are_refused_with_the_form_they_need(path, words):
    with pytest.raises(LabError, match=words):
        systemd.parse(path)


def test_each_dash_of_a_slice_is_a_level_of_the_tree():
    assert systemd.slice_dir("system.slice") == "system.slice"
    assert systemd.slice_dir("user-1000.slice") == "user.slice/user-1000.slice"
    assert systemd.slice_dir("a-b-c.slice") == "a.slice/a-b.slice/a-b-c.slice"
    assert systemd.slice_dir("-.slice") == ""
