"""The key tables of ``docs/config.md``, written from the declarations in ``schema``.

Each table stands between ``<!-- keys: PATH -->`` and ``<!-- /keys -->``, where ``PATH`` is a
section (``broker``, ``broker.tls``, ``routes``) or ``top-level`` for the keys outside any
section. ``python -m mqttbridge.config.docs [FILE]`` rewrites the tables in place;
``--check`` only says whether they are stale (tests/config/test_docs.py runs it on every test
run, so a declaration cannot change without its documentation).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import MISSING, Field
from typing import Any

from mqttbridge.config.schema import Config
from mqttbridge.config.settings import Kind, Setting, settings_of

__all__ = ["TOP_LEVEL", "key_table", "main", "section_class", "update"]

TOP_LEVEL = "top-level"
_BLOCK = re.compile(r"(<!-- keys: (?P<path>[\w.-]+) -->\n).*?(?=<!-- /keys -->)", re.DOTALL)


def section_class(path: str) -> type:
    """The dataclass whose keys the section at ``path`` (``broker.tls``) holds."""
    cls: type = Config
    if path == TOP_LEVEL:
        return cls
    for name in path.split("."):
        found = {field.name: declared for field, declared in settings_of(cls)}.get(name)
        if found is None or found.section is None:
            raise ValueError(f"no section {path!r} in the configuration")
        cls = found.section
    return cls


def key_table(path: str) -> str:
    """The Markdown table of the keys at ``path``, one row a key, in declaration order.
    The top level lists only its single values; its sections have tables of their own."""
    rows = ["| Key | Type | Default | Meaning |", "|---|---|---|---|"]
    for field, declared in settings_of(section_class(path)):
        if path == TOP_LEVEL and declared.kind not in (Kind.VALUE, Kind.TEXT):
            continue
        cells = (f"`{field.name}`", declared.type_doc, _default(field, declared), declared.doc)
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def update(text: str) -> str:
    """``text`` with every key table between markers written afresh."""
    return _BLOCK.sub(lambda match: match.group(1) + key_table(match.group("path")), text)


def _default(field: Field[Any], declared: Setting) -> str:
    if declared.default_doc is not None:
        return declared.default_doc
    if field.default is MISSING:
        raise ValueError(f"{field.name}: no default to show; declare default_doc")
    return f"`{_yaml(field.default)}`"


def _yaml(value: Any) -> str:
    """A default as it would be written in the file."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mqttbridge.config.docs", description=__doc__.splitlines()[0]
    )
    parser.add_argument("file", nargs="?", default="docs/config.md")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the tables are stale, change nothing"
    )
    args = parser.parse_args(argv)
    with open(args.file, encoding="utf-8") as file:
        text = file.read()
    fresh = update(text)
    if fresh == text:
        return 0
    if args.check:
        print(
            f"{args.file}: the key tables differ from the declarations in "
            "mqttbridge.config.schema; run `python -m mqttbridge.config.docs`",
            file=sys.stderr,
        )
        return 1
    with open(args.file, "w", encoding="utf-8") as file:
        file.write(fresh)
    print(f"{args.file}: key tables rewritten", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
