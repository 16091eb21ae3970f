"""The start protocol's messages: each one survives the wire, and nothing else is accepted."""

from __future__ import annotations

import dataclasses
import json

import pytest

from minicontainer.errors import LabError
from minicontainer.process import messages
from minicontainer.process.channel import Channel

EXAMPLES = {
    "Create": {"spec": {"rootfs": "/img"}, "staged": True}, "Advance": {"until": "overlay"},
    "RunFunction": {"name": "f", "source": "def f(): pass", "timeout": 2.0}, "Signal": {"signal": 15},
    "Stop": {"grace": 0.5}, "StepDone": {"name": "overlay", "detail": "lower=/img", "process": "init"},
    "Staged": {"steps": [["cgroup", "helper", "make it"]]}, "Paused": {"done": ["cgroup"], "pid": 7},
    "Created": {"pid": 7, "cgroup": {"memory": "/sys/fs/cgroup/x"}}, "Started": {"pid": 7},
    "Exited": {"code": -9, "stats": {"oom_kills": 1}}, "FunctionResult": {"value": [1, "two"]},
    "Error": {"error": {"what": "w", "cause": "c", "fix": "f", "step": "s"}, "ended": True},
    "InitPid": {"pid": 8}, "Network": {"lease": {"address": "10.0.0.2"}},
    "HookState": {"state": {"id": "x", "status": "creating", "pid": 8}}, "RunStep": {"name": "exec"},
    "RunSteps": {"names": ["proc", "dev"]},
}


@pytest.mark.parametrize("name", sorted(messages.MESSAGES))
def test_every_message_round_trips_through_json(name):
    cls = messages.MESSAGES[name]
    message = cls(**EXAMPLES.get(name, {}))
    wire = json.dumps(messages.encode(message))
    assert messages.decode(json.loads(wire)) == message
    assert json.loads(wire)["type"] == name


def test_a_channel_carries_them_in_order():
    a, b = Channel.pair()
    try:
        sent = [messages.RunStep("overlay"), messages.StepDone("overlay", "x", "init"), messages.Start()]
        for message in sent:
            assert a.send(message)
        assert [b.recv(timeout=1) for _ in sent] == sent
        a.close()
        assert b.recv(timeout=1) is None  # EOF: the other side is gone
    finally:
        b.close()


def test_an_unknown_message_is_a_clear_error():
    with pytest.raises(LabError, match="unknown message 'Frobnicate'"):
        messages.decode({"type": "Frobnicate"})


def test_every_message_class_is_registered():
    classes = {obj for obj in vars(messages).values() if dataclasses.is_dataclass(obj) and isinstance(obj, type)}
    assert classes == set(messages.MESSAGES.values())


def test_an_error_message_carries_the_lab_error():
    error = LabError("mount failed", "not root", "use sudo", step="overlay")
    assert messages.Error.of(error).exception().to_dict() == error.to_dict()


def test_the_lifecycle_moves_only_as_the_spec_allows():
    from minicontainer.state import Status, advance
    assert advance(None, Status.CREATING) == "creating"
    assert advance(Status.CREATING, Status.CREATED) == Status.CREATED
    assert advance(Status.STAGED, Status.RUNNING) == Status.RUNNING
    for current, new in ((Status.RUNNING, Status.CREATED), (Status.STOPPED, Status.RUNNING), (None, Status.RUNNING),
                         (Status.CREATED, Status.STAGED)):
        with pytest.raises(RuntimeError, match=f"from {current or 'nothing'} to {new}"):
            advance(current, new)


def test_an_unexpected_message_is_named_not_dropped():
    from minicontainer.process import messages
    error = messages.unexpected(messages.Start(), "RunStep or RunFunction")
    assert "unexpected message on a runtime channel: Start, where RunStep or RunFunction" in error.what
    assert "the end of the channel" in messages.unexpected(None, "Create").what
