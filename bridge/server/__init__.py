"""The protocol server: turns broker messages into "mqtt" events for application instances and
what they send back into MQTT publishes and subscriptions.

One module per concern: ``server`` (lifecycle: start, run, stop; builds and wires the parts),
``dispatch`` (each inbound message to its instances, backpressure, an ended instance's
messages), ``registry`` (instances by key: spawn, LRU, idle reaping, how each ended),
``instances`` (one instance's queue and its three callbacks; the ``Ending`` enum), ``acks``
(ordered acknowledgements), ``outbound`` (what applications send), ``subscriptions`` (filters
applications subscribe to), ``mqttasgi`` (master/worker mode), ``intake`` (publish requests
from the channel layer), ``deadletter`` (the record of a refused message), ``link`` (what the
parts share of the broker connection) and ``logfields`` (log fields).

One QoS 1 message's way, file by file (``mqttbridge.`` left out)::

    mqtt/client.py        MqttClient._on_readable: the socket is readable (add_reader)
    mqtt/paho_private.py  BufferedClient: paho parses the PUBLISH from a 64 KiB buffer and
                          calls on_message directly
    mqtt/client.py        MqttClient._handle_message -> Dispatcher.on_message
    server/dispatch.py    on_message: topic and size checked; AckTracker.track (acks.py);
                          the event built by protocol/build.py; routes matched once
                          (routing.py TopicRouter.match -> protocol/topics.py); the
                          instance found or started (registry.py lookup/spawn, scope from
                          protocol/build.py); AckTracker.hold and Instance.put
                          (instances.py); matching mqtt.sub holders (subscriptions.py);
                          a message no instance took is acknowledged in turn (settle)
    server/registry.py    the instance's task runs app(scope, Instance.receive, Instance.send):
                          for Python routes the user's application, through its middleware
                          to routing.py TopicRouter.__call__ (a dict lookup by the scope's
                          pattern, no matching), then the consumer
    consumers/base.py     _MqttRunner._pump_mqtt: await receive()
    server/instances.py   Instance.receive pops the event (and reports ``drained`` to the
                          dispatcher if its full queue had paused reading)
    consumers/base.py     MqttConsumer.dispatch -> mqtt_msg -> the user's receive()

and back::

    consumers/base.py     publish() -> send(mqtt.pub) = Instance.send (instances.py)
    server/outbound.py    Outbound.handle_send: protocol/events.py validate_event, then
                          MqttClient.publish (mqtt/client.py) -> paho -> one write per loop pass
    consumers/base.py     the handler returns; the consumer calls receive() again
    server/instances.py   Instance.receive releases the previous message -> AckTracker.release
                          (acks.py): in arrival order -> BrokerLink.ack (link.py) ->
                          MqttClient.ack (mqtt/client.py)

``server.py`` is on neither path: it starts and stops the parts, and only an instance's end
fans out from it (to outbound, dispatch and mqttasgi).
"""
