"""``python -m mqttbridge.devices``: the device simulator, as ``mqttbridge simulate``."""

import sys

from mqttbridge.devices.simulator.cli import main

sys.exit(main())
