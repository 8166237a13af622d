"""The five measurements and the profile: each a function of a ``Context`` returning rows.

One Mosquitto serves the whole run; the scenarios run one after another, never side by side.
``soak`` (minutes, and its own broker, which it restarts) and ``scaleout`` run only when named.
"""

from bench.scenarios.context import Context, Sizes
from bench.scenarios.layer import layer
from bench.scenarios.memory import memory
from bench.scenarios.profiling import profile
from bench.scenarios.roundtrip import roundtrip
from bench.scenarios.scaleout import scaleout
from bench.scenarios.simulator import simulator
from bench.scenarios.soak import soak
from bench.scenarios.throughput import qos1, throughput

__all__ = ["ON_REQUEST", "SCENARIOS", "Context", "Sizes"]

SCENARIOS = {
    "throughput": throughput,
    "qos1": qos1,
    "roundtrip": roundtrip,
    "memory": memory,
    "layer": layer,
    "profile": profile,
    "soak": soak,
    "scaleout": scaleout,
    "simulator": simulator,
}
# Run only when named: too long for every run, or not a measurement of one bridge.
ON_REQUEST = ("soak", "scaleout", "simulator")
