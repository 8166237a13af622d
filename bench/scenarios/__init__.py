"""The five measurements and the profile: each a function of a ``Context`` returning rows.

One Mosquitto serves the whole run; the scenarios run one after another, never side by side.
``scaleout`` and ``simulator`` run only when named. The soak (bridge and broker faults under a
steady QoS 1 stream) is a test: tests/soak/test_soak.py.
"""

from bench.scenarios.context import Context, Sizes
from bench.scenarios.layer import layer
from bench.scenarios.memory import memory
from bench.scenarios.profiling import profile
from bench.scenarios.roundtrip import roundtrip
from bench.scenarios.scaleout import scaleout
from bench.scenarios.simulator import simulator
from bench.scenarios.throughput import qos1, throughput

__all__ = ["ON_REQUEST", "SCENARIOS", "Context", "Sizes"]

SCENARIOS = {
    "throughput": throughput,
    "qos1": qos1,
    "roundtrip": roundtrip,
    "memory": memory,
    "layer": layer,
    "profile": profile,
    "scaleout": scaleout,
    "simulator": simulator,
}
# Run only when named: too long for every run, or not a measurement of one bridge.
ON_REQUEST = ("scaleout", "simulator")
