"""Instance: the hand-off to one application through three callbacks, and how it ended."""

import asyncio
from typing import Any

import pytest

from mqttbridge.protocol.build import connect_event, disconnect_event, message_event
from mqttbridge.protocol.events import LayerEventFailed
from mqttbridge.server.acks import AckTracker
from mqttbridge.server.instances import Ending, Instance, classify_ending


class _Callbacks:
    """What an instance is given, recording what it reported."""

    def __init__(self) -> None:
        self.acked: list[int] = []
        self.acks = AckTracker(lambda mid, qos: self.acked.append(mid))
        self.drained: list[Instance] = []
        self.sent: list[tuple[Instance, dict[str, Any]]] = []

    def instance(self) -> Instance:
        return Instance(
            ("p", "t1"),
            "tests.Consumer",
            {"type": "mqtt"},
            release=self.acks.release,
            drained=self.drained.append,
            send=lambda inst, event: self.sent.append((inst, event)),
        )

    def queue_message(self, inst: Instance, mid: int) -> None:
        token = self.acks.track(mid, 1)
        self.acks.hold(token)
        inst.put(_message(f"t/{mid}"), token)


def _message(topic: str) -> dict[str, Any]:
    return message_event(topic, b"x", 1, False, False, {})


async def test_a_message_is_released_when_the_application_asks_for_the_next_event():
    calls = _Callbacks()
    inst = calls.instance()
    calls.queue_message(inst, 1)
    calls.queue_message(inst, 2)
    assert (await inst.receive())["mqtt"]["topic"] == "t/1"
    assert calls.acked == []  # being handled
    await inst.receive()
    assert calls.acked == [1]
    assert inst.finish_current() is not None
    assert calls.acked == [1, 2] and inst.idle()


async def test_receive_waits_for_an_event_and_put_wakes_it():
    calls = _Callbacks()
    inst = calls.instance()
    waiting = asyncio.create_task(inst.receive())
    await asyncio.sleep(0)
    assert not waiting.done()
    inst.put(connect_event(), None)
    assert await asyncio.wait_for(waiting, 1) == connect_event()


async def test_only_a_paused_instance_reports_that_it_drained():
    calls = _Callbacks()
    inst = calls.instance()
    calls.queue_message(inst, 1)
    calls.queue_message(inst, 2)
    await inst.receive()
    assert calls.drained == []
    inst.paused = True
    await inst.receive()
    assert calls.drained == [inst]


async def test_send_hands_the_event_and_the_instance_to_the_send_callback():
    calls = _Callbacks()
    inst = calls.instance()
    event = {"type": "mqtt.pub", "mqtt": {"topic": "a", "payload": b""}}
    await inst.send(event)
    assert calls.sent == [(inst, event)]


async def test_queued_messages_are_taken_without_the_lifecycle_events():
    calls = _Callbacks()
    inst = calls.instance()
    inst.put(connect_event(), None)
    calls.queue_message(inst, 1)
    inst.put(disconnect_event("idle timeout"), None)
    leftovers = inst.take_queued_messages()
    assert [event["mqtt"]["topic"] for event, _ in leftovers] == ["t/1"]
    assert not inst.items


@pytest.mark.parametrize(
    ("error", "cancelled", "current", "ending"),
    [
        (None, False, None, Ending.RETURNED),
        (None, True, (_message("a"), None), Ending.CANCELLED),
        (RuntimeError("x"), False, (_message("a"), None), Ending.CRASHED_ON_MESSAGE),
        (
            LayerEventFailed(ValueError("x")),
            False,
            (_message("a"), None),
            Ending.CRASHED_ON_LAYER_EVENT,
        ),
        (RuntimeError("x"), False, (connect_event(), None), Ending.CRASHED_OUTSIDE_MESSAGE),
        (RuntimeError("x"), False, None, Ending.CRASHED_OUTSIDE_MESSAGE),
    ],
    ids=["returned", "cancelled", "on-message", "on-layer-event", "on-connect", "before-any"],
)
def test_how_an_instance_ended_is_classified_once(error, cancelled, current, ending):
    assert classify_ending(error, cancelled, current) is ending


def test_only_a_crash_outside_a_message_keeps_queued_messages_from_a_fresh_instance():
    assert [e for e in Ending if not e.retries_queued] == [Ending.CRASHED_OUTSIDE_MESSAGE]
    assert [e for e in Ending if not e.crashed] == [Ending.RETURNED, Ending.CANCELLED]
