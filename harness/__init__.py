"""What the tests and the benchmarks both drive the bridge with, and neither owns.

* ``processes``: Mosquitto and Redis as private children on free ports of 127.0.0.1;
* ``children``: Python children that report in JSON lines (publishers, bridge runners), and
  ``events``, the children's side of it;
* ``wire``: just enough MQTT packet encoding for a load generator on a bare socket.

A package of its own, beside ``tests/`` and ``bench/``, so that ``bench/`` never imports the
test suite and the tests never import the benchmarks. It is not installed with mqttbridge
(pyproject.toml lists the installed packages): both run from the repository.
"""
