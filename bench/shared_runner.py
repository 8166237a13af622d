"""``bench.bridge_runner`` with ``broker.shared_group`` set: a member of a bridge fleet.

    python -m bench.shared_runner --group NAME --port P --mode count --count N [...]

Every option but ``--group`` is bridge_runner's. The YAML the runner builds gets
``shared_group: NAME`` under ``broker:``, so the routes subscribe to ``$share/NAME/<filter>``
and the broker hands each message to one member of the group.
"""

from __future__ import annotations

import argparse
import sys

from bench import bridge_runner


def main() -> None:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--group", required=True)
    ours, rest = parser.parse_known_args()
    base = bridge_runner.config_text

    def config_text(args: argparse.Namespace) -> str:
        return base(args).replace("broker:\n", f"broker:\n  shared_group: {ours.group}\n", 1)

    # run() looks the function up at call time, so the runner builds the fleet's config.
    bridge_runner.config_text = config_text
    sys.argv = [sys.argv[0], *rest]
    bridge_runner.main()


if __name__ == "__main__":
    main()
