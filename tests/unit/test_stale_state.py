"""What counts as left behind in the state root: a dir whose creator has not written its state.json yet is
a container being made, not litter (a shared helper sweeps the root as it starts, beside others' creates)."""

from __future__ import annotations

import os
import time

from minicontainer import lifecycle, state


def test_a_state_dir_without_state_json_is_creating_until_its_grace_is_over(tmp_path, monkeypatch):
    monkeypatch.setattr(state, "_chosen_root", str(tmp_path))
    os.mkdir(tmp_path / "young")
    os.mkdir(tmp_path / "old")
    long_ago = time.time() - lifecycle.NO_STATE_GRACE - 5
    os.utime(tmp_path / "old", (long_ago, long_ago))
    rows = {row["name"]: row["status"] for row in lifecycle.list_containers()}
    assert rows == {"young": "creating", "old": "stale (no state.json)"}
    removed, live = lifecycle.remove_stale()
    assert live == {"young"} and os.path.isdir(tmp_path / "young")
    assert not os.path.exists(tmp_path / "old") and any("old" in line for line in removed)
