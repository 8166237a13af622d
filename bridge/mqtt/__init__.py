"""The connection to an MQTT broker: paho-mqtt 2.x driven from the asyncio loop (``client``), and
the explanation of why a connection failed (``connect_errors``)."""
