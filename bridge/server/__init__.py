"""The protocol server: turns broker messages into "mqtt" events for application instances and
what they send back into MQTT publishes and subscriptions.

``server`` runs the lifecycle and routes each message; ``instances`` holds each instance's queue
and the ordered acknowledgements; ``subscriptions`` the filters applications subscribe to;
``intake`` publish requests arriving over the channel layer; ``deadletter`` the record of a
refused message.
"""
