"""Parsing what learners type for limits, and the messages for what is wrong."""

from __future__ import annotations

import os

import pytest

from minicontainer.cgroups.limits import parse_cpus, parse_pids, parse_size
from minicontainer.errors import LabError


@pytest.mark.parametrize("text, expected", [
    ("64M", 64 << 20), ("1.5G", 3 << 29), ("512k", 512 << 10), ("4096", 4096), ("64MiB", 64 << 20),
    ("2g", 2 << 30), ("max", None), ("MAX", None), (1024, 1024), (" 8M ", 8 << 20),
])
def test_sizes_parse(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text, words", [
    ("12XB", "is not a size"), ("-5M", "is not a size"), ("0", "must be more than zero"),
    ("0M", "must be more than zero"), ("", "is not a size"), ("M", "is not a size"), ("1.2.3G", "is not a size"),
])
def test_bad_sizes_say_what_is_wrong_and_what_to_do(text, words):
    with pytest.raises(LabError) as caught:
        parse_size(text)
    assert words in str(caught.value)
    assert "64M" in caught.value.fix  # an example of a good value


def test_cpus():
    assert parse_cpus("0.5") == 0.5
    assert parse_cpus("max") is None
    for bad in ("0", "-1", "lots", str((os.cpu_count() or 1) + 1)):
        with pytest.raises(LabError) as caught:
            parse_cpus(bad)
        assert caught.value.fix


def test_pids():
    assert parse_pids("32") == 32
    assert parse_pids("max") is None
    for bad in ("0", "-3", "1.5", "many"):
        with pytest.raises(LabError) as caught:
            parse_pids(bad)
        assert "pids limit" in str(caught.value)
