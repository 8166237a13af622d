"""MicroPython's ``machine``, as much as the firmware example uses, for CPython."""

import os

_PINS: dict[int, int] = {}


def unique_id() -> bytes:
    return bytes.fromhex(os.environ.get("BOARD_ID", "a1b2c3d4e5f6"))


class Pin:
    OUT = 1

    def __init__(self, number: int, mode: int = 0) -> None:
        self.number = number

    def value(self, level: int | None = None) -> int:
        if level is not None:
            _PINS[self.number] = level
        return _PINS.get(self.number, 0)
