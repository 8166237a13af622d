"""Tests for mqttbridge.config.docs: docs/config.md's key tables follow the declarations."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mqttbridge.config import docs
from mqttbridge.config.schema import BrokerConfig, LimitsConfig
from mqttbridge.config.settings import keys_of

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def test_docs_config_md_is_up_to_date_with_the_declarations() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert docs.update(text) == text, "run `python -m mqttbridge.config.docs` and commit"


def test_every_section_of_the_file_has_its_table_in_the_docs() -> None:
    text = DOC.read_text(encoding="utf-8")
    for path in ("broker", "broker.tls", "broker.reconnect", "channel_layer", "routes",
                 "limits", docs.TOP_LEVEL):  # fmt: skip
        assert f"<!-- keys: {path} -->\n" + docs.key_table(path) + "<!-- /keys -->" in text


def test_a_table_has_a_row_per_declared_key_with_type_and_default() -> None:
    rows = docs.key_table("limits").splitlines()[2:]
    assert [row.split(" | ")[0] for row in rows] == [f"| `{key}`" for key in keys_of(LimitsConfig)]
    assert rows[0].startswith("| `max_payload_bytes` | integer, 1–268435455 | `262144` | ")
    assert rows[2].startswith("| `idle_timeout` | seconds, > 0 | `300` | ")
    assert docs.key_table(docs.TOP_LEVEL).count("\n") == 3  # dead_letter_topic, no sections


def test_a_stale_table_is_found_and_rewritten(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = DOC.read_text(encoding="utf-8").replace(
        "| `keepalive` | integer, 5–65535 |", "| `keepalive` | integer, 1–100 |"
    )
    path = tmp_path / "config.md"
    path.write_text(stale, encoding="utf-8")
    assert docs.main([str(path), "--check"]) == 1
    assert "the key tables differ from the declarations" in capsys.readouterr().err
    assert path.read_text(encoding="utf-8") == stale  # --check changes nothing
    assert docs.main([str(path)]) == 0
    assert path.read_text(encoding="utf-8") == DOC.read_text(encoding="utf-8")
    assert docs.main([str(path), "--check"]) == 0


def test_a_changed_declaration_makes_the_docs_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    field = next(f for f in dataclasses.fields(BrokerConfig) if f.name == "keepalive")
    declared = field.metadata["mqttbridge.setting"]
    changed = dataclasses.replace(declared, doc="Something else")
    monkeypatch.setattr(field, "metadata", {"mqttbridge.setting": changed})
    text = DOC.read_text(encoding="utf-8")
    assert docs.update(text) != text


def test_an_unknown_section_in_a_marker_is_refused() -> None:
    with pytest.raises(ValueError, match="no section 'brokr'"):
        docs.update("<!-- keys: brokr -->\n<!-- /keys -->\n")
