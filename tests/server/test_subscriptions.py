"""DynamicSubscriptions: filters applications subscribe to, shared between instances and with
the routes' own subscriptions."""

from __future__ import annotations

from typing import Any

from mqttbridge.server.subscriptions import DynamicSubscriptions
from tests.server.parts import RecordingClient


class _Inst:
    """What the subscriptions keep of an instance: a set of its filters."""

    def __init__(self) -> None:
        self.subscriptions: set[str] = set()


def _matches(subs: DynamicSubscriptions, topic: str) -> list[Any]:
    return [inst for targets in subs.instances_for(topic) for inst in targets]


def test_a_filter_delivers_to_every_instance_holding_it_until_the_last_lets_go():
    subs, client, one, two = DynamicSubscriptions(), RecordingClient(), _Inst(), _Inst()
    subs.add(client, one, "cmd/#", 1)  # type: ignore[arg-type]
    subs.add(client, two, "cmd/#", 0)  # type: ignore[arg-type]
    assert set(map(id, _matches(subs, "cmd/a/b"))) == {id(one), id(two)}
    subs.drop(client, one, "cmd/#")  # type: ignore[arg-type]
    assert client.subscriptions == {"cmd/#": 0} and _matches(subs, "cmd/x") == [two]
    subs.drop(client, two, "cmd/#")  # type: ignore[arg-type]
    assert client.subscriptions == {} and not subs and one.subscriptions == set()


def test_a_shared_subscription_matches_the_topics_of_its_filter():
    subs, client, inst = DynamicSubscriptions(), RecordingClient(), _Inst()
    subs.add(client, inst, "$share/g/sensors/+", 1)  # type: ignore[arg-type]
    assert _matches(subs, "sensors/t1") == [inst]


def test_dropping_a_routes_filter_keeps_the_route_subscribed_at_its_qos():
    subs, client, inst = DynamicSubscriptions(), RecordingClient(), _Inst()
    subs.add_route(client, "sensors/+", 1)  # type: ignore[arg-type]
    subs.add(client, inst, "sensors/+", 0)  # type: ignore[arg-type]
    assert client.subscriptions == {"sensors/+": 1}  # never lowered below the route's QoS
    subs.drop(client, inst, "sensors/+")  # type: ignore[arg-type]
    assert client.subscriptions == {"sensors/+": 1}
    assert subs.route_subscriptions == {"sensors/+": 1}


def test_while_stopping_the_broker_keeps_the_subscription():
    subs, client, inst = DynamicSubscriptions(), RecordingClient(), _Inst()
    subs.add(client, inst, "cmd/#", 1)  # type: ignore[arg-type]
    subs.drop(None, inst, "cmd/#")  # type: ignore[arg-type]
    assert client.subscriptions == {"cmd/#": 1} and not subs
