"""Payload values that change from message to message: ``{$random_walk: {min: 15, max: 30}}``.

A profile names a generator with a ``$`` key so that it cannot be mistaken for a JSON object the
firmware publishes. Each generator here is a factory: ``make(params)`` checks the parameters once,
when the profile is read, and returns a function that builds one device's own generator (its own
walk, its own counter), seeded from the run's ``--seed`` and the device's index.
"""

from __future__ import annotations

import datetime
import math
import random
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

__all__ = ["GENERATORS", "OMIT", "Context", "GeneratorError", "make_generator"]


class Context(NamedTuple):
    """What a value may depend on when a message is built."""

    elapsed: float  # seconds since the device started
    sequence: int  # messages this stream has published
    device_id: str
    ref: str | None  # the round-trip token, when --round-trip measures


class GeneratorError(ValueError):
    """A generator's parameters are wrong; ``key`` names the parameter."""

    def __init__(self, message: str, key: str = "") -> None:
        super().__init__(message)
        self.key = key


#: Returned by a value that should not appear: its key is left out of the JSON object.
OMIT: Any = object()

Value = Callable[[Context], Any]
Factory = Callable[[random.Random], Value]


class _Params:
    """A generator's parameters, each taken with its type and range checked."""

    def __init__(self, name: str, params: Mapping[str, Any], known: tuple[str, ...]) -> None:
        self.name = name
        self.params = params
        for key in params:
            if key not in known:
                expected = ", ".join(known) if known else "none"
                raise GeneratorError(f"unknown parameter for ${name}; expected: {expected}", key)

    def number(self, key: str, default: float | None = None) -> float:
        value = self.params.get(key, default)
        if value is None:
            raise GeneratorError(f"${self.name} needs {key!r}", key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise GeneratorError(f"expected a number, got {value!r}", key)
        return float(value)

    def positive(self, key: str, default: float | None = None) -> float:
        value = self.number(key, default)
        if value <= 0:
            raise GeneratorError(f"must be greater than 0, got {value:g}", key)
        return value

    def decimals(self, default: int = 2) -> int:
        value = self.params.get("decimals", default)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
            raise GeneratorError(f"expected an integer from 0 to 10, got {value!r}", "decimals")
        return value


def _rounder(decimals: int) -> Callable[[float], float | int]:
    return (lambda value: round(value)) if decimals == 0 else (lambda value: round(value, decimals))


def _random_walk(p: _Params) -> Factory:
    low, high = p.number("min"), p.number("max")
    if low >= high:
        raise GeneratorError(f"min ({low:g}) must be below max ({high:g})", "min")
    start = p.number("start", (low + high) / 2)
    step = p.positive("step", (high - low) / 50)
    rounded = _rounder(p.decimals())

    def make(rng: random.Random) -> Value:
        value = start

        def walk(ctx: Context) -> float | int:
            nonlocal value
            value += rng.uniform(-step, step)
            # Reflect at the bounds rather than clamp, so the walk does not stick to them.
            if value > high:
                value = 2 * high - value
            elif value < low:
                value = 2 * low - value
            return rounded(value)

        return walk

    return make


def _sine(p: _Params) -> Factory:
    low, high = p.number("min"), p.number("max")
    period = p.positive("period", 60)
    given_phase = p.params.get("phase")
    phase = None if given_phase is None else p.number("phase")
    rounded = _rounder(p.decimals())
    middle, amplitude = (low + high) / 2, (high - low) / 2

    def make(rng: random.Random) -> Value:
        # Without a phase, devices start at different points of the wave, as real ones would.
        offset = rng.uniform(0, period) if phase is None else phase

        def sine(ctx: Context) -> float | int:
            return rounded(
                middle + amplitude * math.sin(2 * math.pi * (ctx.elapsed + offset) / period)
            )

        return sine

    return make


def _counter(p: _Params) -> Factory:
    start, step = p.number("start", 0), p.number("step", 1)
    whole = start.is_integer() and step.is_integer()

    def make(rng: random.Random) -> Value:
        def count(ctx: Context) -> float | int:
            value = start + step * ctx.sequence
            return int(value) if whole else value

        return count

    return make


def _choice(p: _Params) -> Factory:
    values = p.params.get("values")
    if not isinstance(values, list) or not values:
        raise GeneratorError("$choice needs 'values', a non-empty list", "values")
    weights = p.params.get("weights")
    if weights is not None and (
        not isinstance(weights, list)
        or len(weights) != len(values)
        or not all(
            isinstance(w, int | float) and not isinstance(w, bool) and w >= 0 for w in weights
        )
    ):
        raise GeneratorError("'weights' must be one number (0 or more) per value", "weights")

    def make(rng: random.Random) -> Value:
        return lambda ctx: rng.choices(values, weights)[0]

    return make


def _battery(p: _Params) -> Factory:
    start = p.number("start", 100)
    per_hour = p.number("drain_per_hour", 1)
    low = p.number("min", 0)
    rounded = _rounder(p.decimals(1))

    def make(rng: random.Random) -> Value:
        # Batteries differ: each device starts a little lower and drains a little faster or slower.
        first = start - rng.uniform(0, max(0.0, (start - low) * 0.2))
        rate = per_hour * rng.uniform(0.8, 1.2) / 3600

        def level(ctx: Context) -> float | int:
            return rounded(max(low, first - rate * ctx.elapsed))

        return level

    return make


_TIME_FORMATS = ("iso", "local", "unix", "unix_ms")


def _timestamp(p: _Params) -> Factory:
    form = p.params.get("format", "iso")
    if form not in _TIME_FORMATS:
        raise GeneratorError(f"expected one of {', '.join(_TIME_FORMATS)}, got {form!r}", "format")

    def stamp(ctx: Context) -> Any:
        now = datetime.datetime.now(datetime.UTC)
        if form == "unix":
            return int(now.timestamp())
        if form == "unix_ms":
            return int(now.timestamp() * 1000)
        if form == "local":  # Tasmota's "Time": local time, seconds, no zone
            return now.astimezone().strftime("%Y-%m-%dT%H:%M:%S")
        return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    return lambda rng: stamp


def _uptime(p: _Params) -> Factory:
    return lambda rng: lambda ctx: int(ctx.elapsed)


def _device_id(p: _Params) -> Factory:
    return lambda rng: lambda ctx: ctx.device_id


def _round_trip(p: _Params) -> Factory:
    # Left out unless --round-trip measures: a consumer echoes it back in its reply.
    return lambda rng: lambda ctx: OMIT if ctx.ref is None else ctx.ref


GENERATORS: dict[str, tuple[Callable[[_Params], Factory], tuple[str, ...]]] = {
    "random_walk": (_random_walk, ("start", "min", "max", "step", "decimals")),
    "sine": (_sine, ("min", "max", "period", "phase", "decimals")),
    "counter": (_counter, ("start", "step")),
    "choice": (_choice, ("values", "weights")),
    "battery": (_battery, ("start", "drain_per_hour", "min", "decimals")),
    "timestamp": (_timestamp, ("format",)),
    "uptime": (_uptime, ()),
    "device_id": (_device_id, ()),
    "round_trip": (_round_trip, ()),
}


def make_generator(name: str, params: Mapping[str, Any]) -> Factory:
    """The factory for ``$name`` with ``params``; ``GeneratorError`` says what is wrong."""
    if name not in GENERATORS:
        import difflib

        close = difflib.get_close_matches(name, GENERATORS, n=1)
        hint = f"did you mean ${close[0]}? " if close else ""
        names = ", ".join(f"${known}" for known in GENERATORS)
        raise GeneratorError(f"unknown generator ${name}; {hint}generators: {names}")
    build, parameters = GENERATORS[name]
    return build(_Params(name, params, parameters))
