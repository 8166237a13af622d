"""What log lines say: ``extra=`` fields for lines about a message or an instance (JSON logs show
each as a key), and counts in words."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mqttbridge.server.instances import Instance

__all__ = ["instance_fields", "instance_params", "log_fields", "plural"]


def log_fields(**fields: Any) -> dict[str, Any]:
    """The fields that have a value."""
    return {key: value for key, value in fields.items() if value is not None}


def instance_fields(inst: Instance, topic: str | None = None) -> dict[str, Any]:
    route = inst.scope.get("topic_route")
    return log_fields(
        topic=topic,
        route=route["pattern"] if route else None,
        route_kwargs=route["kwargs"] if route else None,
        consumer=inst.label,
        app_id=inst.app_id,
    )


def instance_params(inst: Instance) -> str:
    """Which instance, for people: ``device_id=t1``, or ``app_id=0`` for the master."""
    route = inst.scope.get("topic_route")
    if route:
        return ", ".join(f"{name}={value}" for name, value in route["kwargs"].items())
    return f"app_id={inst.app_id!r}" if inst.app_id is not None else ""


def plural(count: int, noun: str) -> str:
    """``"1 route"``, ``"2 routes"``: for messages people read."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
