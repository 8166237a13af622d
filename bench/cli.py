"""``python -m bench [SCENARIO ...] [--quick]``: run the benchmarks, print a table, save JSON.

Scenarios: throughput (QoS 0: raw paho, bridge, mqttasgi, mqttasgi app under the bridge),
qos1, roundtrip, memory, layer (publish from another process over Redis), profile. With none
named, all of these run, in that order. Only when named: scaleout (one bridge against two in a
shared subscription group). ``--quick`` is a smoke run with small counts (under a minute). The
soak (QoS 1 through bridge SIGKILLs and broker restarts) is a test: tests/soak/test_soak.py.

One private Mosquitto (and Redis, for ``layer`` and ``memory``) on free ports of 127.0.0.1,
never the shared brokers on 1883/6379; every process is stopped on the way out.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.procs import ROOT, BenchError
from bench.report import (
    CpuAccount,
    Row,
    busy_fraction,
    code_fingerprint,
    format_table,
    machine_info,
    write_json,
)
from bench.scenarios import ON_REQUEST, SCENARIOS, Context, Sizes
from harness.processes import MosquittoProcess, RedisProcess, ServiceBinaryNotFound, find_binary

__all__ = ["main"]

RESULTS = ROOT / "bench" / "results"
# QoS 0 is at most once: past its queue limit Mosquitto drops messages for a subscriber that
# falls behind. Lifted, so a slow subscriber shows as a low rate, not as lost messages.
BROKER_CONFIG = ["max_queued_messages 0"]
# Share of the machine taken by other processes during a scenario above which it is flagged.
FOREIGN_WARNING = 0.10


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help=f"any of: {', '.join(SCENARIOS)}"
    )
    parser.add_argument(
        "--quick", action="store_true", help="small counts, one repetition: a smoke run"
    )
    parser.add_argument("--repeat", type=int, help="throughput samples per party (median reported)")
    parser.add_argument(
        "--json", type=Path, metavar="FILE", help="where to save results (default: bench/results/)"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the child processes' logs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    unknown = [s for s in args.scenarios if s not in SCENARIOS]
    if unknown:
        print(
            f"error: unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)}",
            file=sys.stderr,
        )
        return 2
    chosen = args.scenarios or [s for s in SCENARIOS if s not in ON_REQUEST]
    if args.quick and not args.scenarios:
        chosen = [s for s in chosen if s != "profile"]
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.repeat:
        sizes.repeat = args.repeat
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.json or RESULTS / f"bench-{stamp}{'-quick' if args.quick else ''}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    logdir = Path(tempfile.mkdtemp(prefix="mqttbridge-bench-"))
    machine = machine_info(
        find_binary("mosquitto", "MOSQUITTO_BIN"), find_binary("redis-server", "REDIS_SERVER_BIN")
    )
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()), flush=True)
    code = code_fingerprint(ROOT)
    busy = busy_fraction()
    machine["busy_before_start"] = round(busy, 3)
    if busy > 0.1:
        print(
            f"WARNING: the machine is {busy:.0%} busy before the benchmarks start: another "
            "process competes for the cores, and the numbers will be low and noisy.",
            flush=True,
        )
    print(f"code under test: bridge/ + consumers/ sha256 {code}", flush=True)

    rows: list[Row] = []
    errors: dict[str, str] = {}
    foreign: dict[str, float] = {}
    started = time.monotonic()
    need_redis = "layer" in chosen or ("memory" in chosen and sizes.extras)
    try:
        broker_process = MosquittoProcess(workdir=logdir / "mosquitto", extra_config=BROKER_CONFIG)
        with broker_process as broker:
            redis = _start_redis(logdir) if need_redis else None
            try:
                ctx = Context(broker, logdir, RESULTS, stamp, sizes, redis)
                services = [p for p in (broker.pid, redis.pid if redis else None) if p]
                account = CpuAccount(services)
                for name in chosen:
                    print(f"\n== {name}", flush=True)
                    account.foreign_share()  # start counting here
                    try:
                        rows += SCENARIOS[name](ctx)
                    except BenchError as exc:
                        errors[name] = str(exc)
                        print(f"  FAILED: {exc}", flush=True)
                    foreign[name] = share = round(account.foreign_share(), 3)
                    if share > FOREIGN_WARNING:
                        print(
                            f"  WARNING: other processes took {share:.0%} of the machine during"
                            f" {name!r}; its numbers are low and noisy: run it again.",
                            flush=True,
                        )
            finally:
                if redis is not None:
                    redis.close()
    except ServiceBinaryNotFound as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; stopping every process", file=sys.stderr)
        return 130

    elapsed = time.monotonic() - started
    code_after = code_fingerprint(ROOT)
    if code_after != code:
        print(
            f"WARNING: bridge/ or consumers/ changed during the run ({code} -> {code_after}):"
            " the results mix two versions of the code; run again."
        )
    print(f"\n{format_table(rows)}\n")
    failed = [r for r in rows if r.verdict == "FAIL"]
    print(
        f"{len(rows)} rows, {len(failed)} targets missed, {len(errors)} scenarios failed,"
        f" {elapsed:.0f} s"
    )
    write_json(
        out,
        {
            "machine": machine,
            "code_sha256": code if code_after == code else f"{code} -> {code_after} (changed)",
            "broker_extra_config": BROKER_CONFIG,
            "foreign_cpu_share": foreign,
            "argv": list(argv if argv is not None else sys.argv[1:]),
            "quick": args.quick,
            "seconds": elapsed,
            "rows": [r.as_dict() for r in rows],
            "errors": errors,
            "data": ctx.data,
            "logs": str(logdir) if args.keep_logs else None,
        },
    )
    print(f"results: {out}")
    if not args.keep_logs and not errors:
        _remove(logdir)
    elif errors:
        print(f"logs kept in {logdir}")
    return 1 if errors else 0


def _start_redis(logdir: Path) -> RedisProcess | None:
    try:
        redis = RedisProcess(workdir=logdir / "redis")
    except ServiceBinaryNotFound as exc:
        print(f"warning: {exc}; the Redis scenarios will fail", file=sys.stderr)
        return None
    redis.start()
    return redis


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
