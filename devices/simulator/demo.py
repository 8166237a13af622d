"""The fleet ``make run`` (``mqttbridge run --demo``) starts next to the bridge: one device of
each shipped profile, publishing every second or two so that the example consumers have work."""

from __future__ import annotations

from mqttbridge.devices.simulator.connection import BrokerTarget
from mqttbridge.devices.simulator.fleet import Fleet, FleetOptions
from mqttbridge.devices.simulator.profiles import load_profile

__all__ = ["run_demo_fleet"]

DEMO_PROFILES = ("generic", "tasmota", "shelly", "esphome", "zigbee2mqtt")


async def run_demo_fleet(host: str, port: int, rate: float = 0.5) -> None:
    """Run until cancelled; the devices go offline cleanly on the way out."""
    profiles = [load_profile(name) for name in DEMO_PROFILES]
    fleet = Fleet(
        profiles,
        BrokerTarget(host, port),
        FleetOptions(devices=len(profiles), rate=rate, log_commands=True),
    )
    await fleet.run()
