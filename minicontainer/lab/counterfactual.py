"""Counterfactual runs of a lesson's checks: the same cell with its mechanism switched off must fail.

A code cell that asserts something about the kernel carries, in its metadata, how to switch the
mechanism it teaches off:

    "counterfactuals": [{"off": "the UTS namespace",
                         "replace": [["namespaces=(\"uts\",)", "namespaces=()"]]}]

Each replacement is plain text that must occur in the cell. The test suite runs the notebook, and
before each such cell runs the changed copy, which must stop at an assert (AssertionError). A
cell whose assert is no lesson check (the doctor's "fix these first") says why instead:

    "counterfactual_exempt": "guards the set-up, teaches nothing"

This module only reads notebooks (no kernel state): tests/unit checks the metadata's shape, and
tests/test_notebooks.py runs the cases.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ASSERT = re.compile(r"^\s*assert\b", re.M)


@dataclass
class Case:
    cell: int
    off: str
    source: str  # the cell with the mechanism switched off


def cases(cell_index: int, cell) -> list[Case]:
    """The counterfactual copies of one cell; ValueError if its metadata does not fit its source."""
    found = []
    for entry in cell.get("metadata", {}).get("counterfactuals", []):
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        for old, new in entry["replace"]:
            if old not in source:
                raise ValueError(f"cell {cell_index}: counterfactual {entry['off']!r} replaces {old!r}, "
                                 "which the cell no longer contains")
            source = source.replace(old, new)
        found.append(Case(cell_index, entry["off"], source))
    return found


def unproven_asserts(notebook) -> list[str]:
    """Cells that assert but neither say how to switch their mechanism off nor why they need not."""
    problems = []
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        metadata = cell.get("metadata", {})
        if ASSERT.search(source) and not metadata.get("counterfactuals") and not metadata.get("counterfactual_exempt"):
            first = source.strip().splitlines()[0][:70]
            problems.append(f"cell {index} ({first}) asserts without a counterfactual")
    return problems
