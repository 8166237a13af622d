import pytest
from channels.routing import ProtocolTypeRouter

from mqttbridge.routing import TopicRouter, find_topic_router, topic
from mqttbridge.testing import MqttCommunicator
from tests import apps


def test_router_matches_first_route_in_order():
    router = TopicRouter(
        [
            topic("a/{x}", apps.RecordingConsumer.as_asgi()),
            topic("a/#", apps.JsonRecorder.as_asgi()),
        ]
    )
    route, kwargs = router.match("a/1")  # type: ignore[misc]
    assert route.pattern.pattern == "a/{x}" and kwargs == {"x": "1"}
    route, kwargs = router.match("a/1/2")  # type: ignore[misc]
    assert route.pattern.pattern == "a/#" and kwargs == {}
    assert router.match("b/1") is None


def test_router_refuses_two_routes_with_the_same_filter():
    with pytest.raises(ValueError, match="subscribe to the same filter 'a/\\+'"):
        TopicRouter(
            [
                topic("a/{x}", apps.RecordingConsumer.as_asgi()),
                topic("a/{y}", apps.JsonRecorder.as_asgi()),
            ]
        )


@pytest.mark.parametrize("qos", [3, True, 1.0, "1"])
def test_route_rejects_bad_qos(qos):
    # The same test as events' and the config file's: True and 1.0 are no QoS levels.
    with pytest.raises(ValueError, match=f"route 'a/b': qos must be 0, 1 or 2, got {qos!r}"):
        topic("a/b", apps.RecordingConsumer.as_asgi(), qos=qos)


def test_router_is_found_under_protocol_type_router_and_middleware():
    router = TopicRouter([topic("a/{x}", apps.RecordingConsumer.as_asgi())])

    class Middleware:
        def __init__(self, inner):
            self.inner = inner

    application = ProtocolTypeRouter({"mqtt": Middleware(router)})
    assert find_topic_router(application) is router
    assert find_topic_router(apps.MqttasgiEcho.as_asgi()) is None


async def test_router_calls_the_route_named_in_the_scope():
    apps.reset()
    router = TopicRouter([topic("sensors/{device_id}/data", apps.RecordingConsumer.as_asgi())])
    communicator = MqttCommunicator(
        ProtocolTypeRouter({"mqtt": router}), "sensors/{device_id}/data", topic="sensors/z/data"
    )
    await communicator.connect()
    await communicator.send_message("sensors/z/data", b"echo")
    published = await communicator.receive_publish()
    assert published["topic"] == "reply/z"
    await communicator.disconnect()
    assert [e[1] for e in apps.EVENTS] == ["connect", "msg", "disconnect"]


async def test_router_without_topic_route_explains_itself():
    router = TopicRouter([topic("a/{x}", apps.RecordingConsumer.as_asgi())])
    with pytest.raises(ValueError, match="needs scope\\['topic_route'\\]"):
        await router({"type": "mqtt"}, None, None)


def test_the_router_is_found_through_channels_own_middleware_stack():
    from channels.auth import AuthMiddlewareStack

    router = TopicRouter([topic("a/{x}", apps.RecordingConsumer.as_asgi())])
    assert find_topic_router(ProtocolTypeRouter({"mqtt": AuthMiddlewareStack(router)})) is router


def test_finding_the_router_follows_only_what_channels_documents():
    router = TopicRouter([topic("a/{x}", apps.RecordingConsumer.as_asgi())])

    class KeepsItElsewhere:
        def __init__(self, app):
            self.app = app

    assert find_topic_router(ProtocolTypeRouter({"mqtt": KeepsItElsewhere(router)})) is None
    assert find_topic_router(ProtocolTypeRouter({"http": router})) is None
