"""BatchWriter against real databases: a SQLite file and a fresh database on the PostgreSQL of
127.0.0.1:5432. The outage through a whole bridge is tests/django/test_batch_outage.py."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db import ProgrammingError, connections, models

from mqttbridge.consumers import InvalidPayload
from mqttbridge.django.batch import BatchWriter, RowRejected
from tests.bridge_fixtures import wait_until
from tests.django_databases import postgres_settings, sqlite_settings, use_databases
from tests.services import psql


class BatchReading(models.Model):
    device = models.CharField(max_length=32)
    seq = models.IntegerField(unique=True)  # a repeated seq is the "bad row"
    value = models.FloatField()

    class Meta:
        app_label = "batchtests"


@pytest.fixture(scope="module")
def sqlite_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("batch") / "db.sqlite3")


def _with_table(alias: str, databases: dict[str, Any]) -> Iterator[str]:
    use_databases(databases)
    with connections[alias].schema_editor() as editor:
        editor.create_model(BatchReading)
    yield alias
    connections.close_all()  # a test's loop has its ORM thread's connection too
    with connections[alias].schema_editor() as editor:
        editor.delete_model(BatchReading)
    connections.close_all()


# PostgreSQL is a real server (tests/conftest.py's postgres_database): an integration test.
@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def alias(request: pytest.FixtureRequest, sqlite_path: str) -> Iterator[str]:
    """The database alias to write to, with an empty BatchReading table."""
    databases = {"sqlite": sqlite_settings(sqlite_path)}
    if request.param == "postgres":
        databases["postgres"] = postgres_settings(request.getfixturevalue("postgres_database"))
    yield from _with_table(request.param, databases)


@pytest.fixture
def sqlite_alias(sqlite_path: str) -> Iterator[str]:
    yield from _with_table("sqlite", {"sqlite": sqlite_settings(sqlite_path)})


@pytest.fixture
def count_rows(alias: str, sqlite_path: str) -> Callable[[], int]:
    """Rows in the table, read through a connection of its own (not Django's)."""
    table = BatchReading._meta.db_table

    def count() -> int:
        if alias == "sqlite":
            with sqlite3.connect(sqlite_path) as db:
                return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
        dbname = connections.settings["postgres"]["NAME"]
        return int(psql(f"SELECT count(*) FROM {table}", dbname=dbname))

    return count


def reading(seq: int, device: str = "d0") -> BatchReading:
    return BatchReading(device=device, seq=seq, value=seq / 10)


async def test_saves_from_many_devices_share_batches(alias: str) -> None:
    writer = BatchWriter(BatchReading, using=alias, max_batch=200, max_delay=0.05)

    async def device(number: int) -> None:
        for i in range(10):
            await writer.save(reading(number * 10 + i, f"d{number}"))

    await asyncio.gather(*(device(n) for n in range(100)))
    await writer.aclose()
    assert writer.stats.saved == 1000
    # Ten saves in a row per device, a hundred devices at once: each flush carries about 100.
    assert writer.stats.flushes * 20 < 1000, writer.stats
    assert await asyncio.to_thread(lambda: BatchReading.objects.using(alias).count()) == 1000


async def test_linger_turns_a_trickle_into_fewer_transactions(alias: str) -> None:
    """Devices at their own pace: rows arrive one by one, a millisecond apart. Group commit
    alone writes them in many small transactions; lingering gathers them (same run, a ratio)."""

    async def trickle(writer: BatchWriter[BatchReading], first: int) -> int:
        async def device(number: int) -> None:
            await asyncio.sleep(number * 0.001)
            await writer.save(reading(first + number, f"d{number}"))

        await asyncio.gather(*(device(n) for n in range(40)))
        await writer.aclose()
        assert writer.stats.saved == 40
        return writer.stats.flushes

    plain = await trickle(BatchWriter(BatchReading, using=alias, max_delay=0.2), 0)
    lingering = await trickle(
        BatchWriter(BatchReading, using=alias, max_delay=0.2, linger=0.1), 100
    )
    assert lingering * 2 <= plain, (lingering, plain)


def test_linger_longer_than_max_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="need 0 <= linger <= max_delay"):
        BatchWriter(BatchReading, max_delay=0.05, linger=0.1)


async def test_save_returns_once_the_row_is_visible_to_another_connection(
    alias: str, count_rows: Callable[[], int]
) -> None:
    writer = BatchWriter(BatchReading, using=alias, max_batch=50, max_delay=0.2)
    seen: list[int] = []

    async def save_then_count(seq: int) -> None:
        await writer.save(reading(seq))
        seen.append(await asyncio.to_thread(count_rows))

    await asyncio.gather(*(save_then_count(seq) for seq in range(30)))
    await writer.aclose()
    # Every save() returned with its own row (and its whole batch) committed.
    assert min(seen) >= 1 and all(count >= rank for rank, count in enumerate(sorted(seen), 1))
    assert count_rows() == 30


async def test_a_bad_row_is_refused_alone_and_the_rest_of_its_batch_stored(
    alias: str, count_rows: Callable[[], int]
) -> None:
    writer = BatchWriter(BatchReading, using=alias, max_batch=100, max_delay=0.05)
    await writer.save(reading(7))
    results = await asyncio.gather(
        *(writer.save(reading(seq)) for seq in range(5, 15)), return_exceptions=True
    )
    await writer.aclose()
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(refused) == 1 and isinstance(refused[0], RowRejected), results
    assert isinstance(refused[0], InvalidPayload)  # so a consumer dead-letters that message
    assert "batchtests.BatchReading refused" in str(refused[0])
    assert results.index(refused[0]) == 2  # seq 7, the repeat
    assert count_rows() == 10
    assert writer.stats.rejected == 1


async def test_aclose_writes_what_is_queued(alias: str, count_rows: Callable[[], int]) -> None:
    writer = BatchWriter(BatchReading, using=alias, max_batch=1000, max_delay=60)
    saves = [asyncio.ensure_future(writer.save(reading(seq))) for seq in range(25)]
    await asyncio.sleep(0)
    assert writer.pending == 25 and not any(s.done() for s in saves)
    await writer.aclose()
    assert all(s.done() and s.exception() is None for s in saves)
    assert count_rows() == 25


@pytest.fixture
def sqlite_lock(sqlite_alias: str, sqlite_path: str) -> Iterator[sqlite3.Connection]:
    """An exclusive lock on the SQLite file: writers get "database is locked", an
    OperationalError, as they would from a database that is down (the PostgreSQL outage is
    tests/django/test_batch_outage.py)."""
    db = sqlite3.connect(sqlite_path, isolation_level=None)
    yield db
    db.close()


async def test_unreachable_database_holds_saves_applies_backpressure_and_logs_once(
    sqlite_alias: str,
    sqlite_lock: sqlite3.Connection,
    sqlite_path: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    alias = sqlite_alias
    caplog.set_level(logging.INFO, logger="mqttbridge.django.batch")
    writer = BatchWriter(
        BatchReading, using=alias, max_batch=5, max_pending=10, max_delay=0.01, retry_max=0.2
    )
    sqlite_lock.execute("BEGIN EXCLUSIVE")
    saves = [asyncio.ensure_future(writer.save(reading(seq))) for seq in range(40)]
    await wait_until(lambda: writer.stats.retries >= 3, what="three failed attempts")
    # Ten held (one batch being retried, the rest queued); thirty wait for room.
    assert writer.pending == 10
    assert not any(s.done() for s in saves)
    sqlite_lock.execute("COMMIT")
    await asyncio.gather(*saves)
    await writer.aclose()
    with sqlite3.connect(sqlite_path) as db:
        assert db.execute("SELECT count(*) FROM batchtests_batchreading").fetchone() == (40,)
    records = [r for r in caplog.records if r.name == "mqttbridge.django.batch"]
    assert [r.levelname for r in records] == ["WARNING", "INFO"], [r.message for r in records]
    assert "database 'sqlite' (sqlite3 " in records[0].message
    assert "OperationalError: database is locked" in records[0].message
    assert "is back after" in records[1].message and "rows of batchtests.BatchReading" in (
        records[1].message
    )
    assert writer.stats.outages == 1


def test_the_writer_refuses_a_batch_larger_than_its_queue() -> None:
    with pytest.raises(ValueError, match=r"BatchWriter\(BatchReading\): need 1 <= max_batch"):
        BatchWriter(BatchReading, max_batch=100, max_pending=10)


class NeverMigrated(models.Model):
    seq = models.IntegerField()

    class Meta:
        app_label = "batchtests"


@pytest.fixture
def postgres_alias(sqlite_path: str, postgres_database: str) -> str:
    use_databases(
        {"sqlite": sqlite_settings(sqlite_path), "postgres": postgres_settings(postgres_database)}
    )
    return "postgres"


async def test_an_error_that_is_not_bad_data_reaches_each_save_and_does_not_wedge(
    postgres_alias: str,
) -> None:
    # PostgreSQL says ProgrammingError for a missing table: not transient, not a bad row.
    # (SQLite says OperationalError, which the writer retries as an outage: docs/django.md,
    # "Store readings in batches".)
    writer = BatchWriter(NeverMigrated, using=postgres_alias, max_delay=0.01)
    results = await asyncio.gather(
        *(writer.save(NeverMigrated(seq=seq)) for seq in range(5)), return_exceptions=True
    )
    await writer.aclose()
    assert all(isinstance(r, ProgrammingError) for r in results), results
    assert not any(isinstance(r, RowRejected) for r in results)  # the handler error path
    assert writer.stats.rejected == 5 and writer.stats.outages == 0
    connections.close_all()
