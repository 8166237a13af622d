"""The "mqtt" ASGI protocol itself: scope and event types, the validation of what applications
send, MQTT topic names, filters and route patterns, and MQTT 5 properties.

Nothing here does I/O; the server, the test communicator and the consumers all build on it.
"""
