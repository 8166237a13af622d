"""The bridge's QoS 0 path under cProfile (always) and py-spy (when installed).

cProfile runs inside the bridge process from ``ready`` to ``done`` (``--profile``), so start-up
is not in it; being deterministic it inflates small calls. py-spy samples a separate,
unprofiled run from outside at 500 Hz and shows where the time really goes. The top 15 of each
are printed and kept in the JSON; the pstats file and py-spy's raw stacks land next to it.
"""

from __future__ import annotations

import collections
import pstats
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.report import Row
from bench.scenarios.context import Context, measure


def profile(ctx: Context) -> list[Row]:
    n = ctx.sizes.profile
    prof = ctx.results_dir / f"bench-{ctx.stamp}-bridge-qos0.prof"
    runner = ("bench.bridge_runner", ["--mode", "count", "--profile", str(prof)])
    measured = measure(ctx, "qos0 bridge under cProfile", runner, n)
    top = _cprofile_top(prof, 15)
    print(f"\n  cProfile, top 15 by tottime ({n:,} messages, ready -> done):")
    print(f"  {'tottime':>8} {'%':>5} {'ncalls':>9} {'cumtime':>8}  function")
    for r in top:
        print(
            f"  {r['tottime']:8.3f} {r['percent']:5.1f} {r['ncalls']:9d} {r['cumtime']:8.3f}"
            f"  {r['function']}"
        )
    ctx.data["profile"] = {
        "messages": n, "rate_under_cprofile": measured["rate"], "cprofile_top15": top,
        "pstats_file": str(prof),
    }  # fmt: skip
    spy = shutil.which("py-spy") or _beside_python("py-spy")
    if spy is None:
        print("  (py-spy not installed: `pip install py-spy` adds a sampling profile)")
    else:
        ctx.data["profile"]["py_spy_top15"] = _py_spy(ctx, spy, n)
    return []


def _cprofile_top(path: Path, count: int) -> list[dict[str, Any]]:
    entries = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    total = sum(value[2] for value in entries.values())
    ranked = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:count]
    return [
        {
            "function": f"{_short(path)}:{line}({name})",
            "ncalls": ncalls,
            "tottime": tottime,
            "percent": 100 * tottime / total,
            "cumtime": cumtime,
        }
        for (path, line, name), (_primitive, ncalls, tottime, cumtime, _callers) in ranked
    ]


def _py_spy(ctx: Context, spy: str, n: int) -> list[dict[str, Any]]:
    out = ctx.results_dir / f"bench-{ctx.stamp}-bridge-qos0.py-spy.txt"
    args = ["--mode", "count", "--count", str(n), "--exit-when-done"]
    err = b""
    with ctx.child("bridge-py-spy", "bench.bridge_runner", args) as bridge:
        bridge.expect("ready", timeout=30)
        record = [
            spy, "record", "--pid", str(bridge.pid), "--rate", "500", "--format", "raw",
            "--output", str(out), "--nonblocking",
        ]  # fmt: skip
        recorder = subprocess.Popen(record, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            time.sleep(1.0)  # py-spy attaches
            with ctx.child("publisher", "bench.publisher", ["--count", str(n)]) as pub:
                pub.expect("done", timeout=120)
                result = bridge.expect("done", timeout=120)
            bridge.stop(grace=30)
            _, err = recorder.communicate(timeout=30)
        finally:
            if recorder.poll() is None:
                recorder.kill()
                recorder.wait()
    if not out.exists():
        print(f"  py-spy recorded nothing: {err.decode(errors='replace').strip()[-300:]}")
        return []
    own: collections.Counter[str] = collections.Counter()
    for line in out.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if stack:
            own[stack.rsplit(";", 1)[-1]] += int(samples)
    total = sum(own.values())
    top = [
        {"function": f, "samples": c, "percent": 100 * c / total} for f, c in own.most_common(15)
    ]
    print(
        f"\n  py-spy, top 15 by own samples ({total} samples at 500 Hz, run at "
        f"{result['rate']:,.0f} msg/s, start-up and shutdown included):"
    )
    for r in top:
        print(f"  {r['percent']:5.1f}%  {r['function']}")
    return top


def _beside_python(name: str) -> str | None:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else None


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", "/work/main/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path
