"""MicroPython's ``utime`` tick functions on CPython's clock."""

import time


def ticks_ms() -> int:
    return int(time.monotonic() * 1000)


def ticks_add(ticks: int, delta: int) -> int:
    return ticks + delta


def ticks_diff(new: int, old: int) -> int:
    return new - old


def sleep_ms(ms: int) -> None:
    time.sleep(ms / 1000)
