"""The device simulator: fleets of simulated MQTT devices from YAML profiles (docs/simulator.md).

``Fleet`` runs devices on the event loop, ``load_profile`` reads a profile, ``BrokerTarget`` says
where they connect; ``mqttbridge simulate`` (``cli``) is the command.
"""

from mqttbridge.devices.simulator.connection import BrokerTarget
from mqttbridge.devices.simulator.fleet import Fleet, FleetOptions
from mqttbridge.devices.simulator.profiles import Profile, ProfileError, load_profile

__all__ = ["BrokerTarget", "Fleet", "FleetOptions", "Profile", "ProfileError", "load_profile"]
