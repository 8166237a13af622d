"""Things for tests/config/test_config.py to import by name: a class, and a non-class value."""

from __future__ import annotations


class ExampleConsumer:
    """Stands in for a consumer class; the config loader only imports it."""


class Outer:
    """Holds a nested class, for ``module:Outer.Inner`` import strings."""

    class Inner:
        """A class reached through an attribute path."""


not_a_class = 42
