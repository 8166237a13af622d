"""Simulated devices: the fleet simulator (``simulator``, ``mqttbridge simulate``), its shipped
``profiles/``, and a MicroPython ``firmware/`` example for a real board."""
