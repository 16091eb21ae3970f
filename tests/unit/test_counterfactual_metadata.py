"""Every lesson check names how to switch its mechanism off, and the names still fit the cells."""

from __future__ import annotations

import glob
import json
import os

import pytest

from minicontainer.lab import counterfactual

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOKS = sorted(glob.glob(os.path.join(REPO, "notebooks", "[0-9][0-9]-*.ipynb")))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[os.path.basename(p)[:-6] for p in NOTEBOOKS])
def test_every_assert_has_a_counterfactual(path):
    with open(path) as f:
        notebook = json.load(f)
    assert counterfactual.unproven_asserts(notebook) == []
    for index, cell in enumerate(notebook["cells"]):
        for case in counterfactual.cases(index, cell):  # raises if a replacement no longer fits
            assert case.source != "".join(cell["source"]), f"cell {index}: {case.off!r} changes nothing"


def test_a_stale_replacement_is_reported():
    cell = {"cell_type": "code", "source": "assert 1", "metadata": {"counterfactuals": [
        {"off": "x", "replace": [["not there", "y"]]}]}}
    with pytest.raises(ValueError, match="no longer contains"):
        counterfactual.cases(0, cell)
    assert counterfactual.unproven_asserts({"cells": [dict(cell, metadata={})]})
