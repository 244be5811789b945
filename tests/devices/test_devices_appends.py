"""Group commit of the landing on SQLite (``devices.appends``): batches appended while another
waits for the database share its transaction, none returns before that commit, and a batch
that cannot be written fails alone. (PostgreSQL landings keep concurrent transactions: the
other landing tests run there.)"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import pytest

from medarchive.app import Services
from medarchive.devices.raw import Row, SqlReadings
from medarchive.store.sql.database import open_database

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


class Gated:
    """The store's database, with write transactions held back until ``open`` is set."""

    def __init__(self, db: Any) -> None:
        self.db = db
        self.dialect = db.dialect
        self.sql = db.sql
        self.open = threading.Event()
        self.transactions = 0

    def reading(self) -> Any:
        return self.db.reading()

    @contextmanager
    def writing(self) -> Iterator[Any]:
        assert self.open.wait(30)
        with self.db.writing() as cur:
            self.transactions += 1
            yield cur


def rows(*keys: str) -> list[Row]:
    return [Row(key, "MON-1", "spo2", (97.0,), "2024-05-01T12:00:00Z", 1714564800000000,
                "Patient/p-1", "Device/d-1", 0) for key in keys]


def appended(readings: SqlReadings, batches: Sequence[list[Row]]
             ) -> tuple[list[threading.Thread], dict[int, Any]]:
    """Start one thread per batch, each appending once the previous ones are queued."""
    results: dict[int, Any] = {}

    def run(index: int, batch: list[Row]) -> None:
        try:
            results[index] = readings.append(batch)
        except Exception as exc:
            results[index] = exc

    threads = []
    for index, batch in enumerate(batches):
        thread = threading.Thread(target=run, args=(index, batch))
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + 10
        while readings._group is not None and readings._group.queued() < index + 1:
            assert time.monotonic() < deadline, "the batch was not queued"
            time.sleep(0.005)
    return threads, results


def committed(database_url: str) -> int:
    other = open_database(database_url)  # another connection: sees only committed rows
    try:
        return SqlReadings(other).lag().pending
    finally:
        other.close()


def test_batches_that_arrive_together_share_one_transaction(services: Services,
                                                            database_url: str) -> None:
    gated = Gated(services.store.db)  # type: ignore[attr-defined]
    readings = SqlReadings(gated)
    threads, results = appended(readings, [rows("a1", "a2"), rows("b1", "b2"),
                                           rows("c1", "a1")])
    time.sleep(0.1)
    assert results == {} and committed(database_url) == 0  # nothing returns before the commit
    gated.open.set()
    for thread in threads:
        thread.join(30)
    assert results == {0: 2, 1: 2, 2: 1}  # c's "a1" is a redelivery of a's, in the same group
    assert gated.transactions == 1
    assert committed(database_url) == 5


def test_a_batch_that_cannot_be_written_fails_alone(services: Services, database_url: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    gated = Gated(services.store.db)  # type: ignore[attr-defined]
    readings = SqlReadings(gated)
    insert = readings._insert

    def failing(cur: Any, batch: tuple[Sequence[Row], list[Any]]) -> int:
        added = insert(cur, batch)
        if any(row.key.startswith("bad") for row in batch[0]):
            raise RuntimeError("cannot seal")
        return added

    monkeypatch.setattr(readings, "_insert", failing)
    threads, results = appended(readings, [rows("a1"), rows("bad1", "b2"), rows("c1", "c2")])
    gated.open.set()
    for thread in threads:
        thread.join(30)
    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], RuntimeError)
    assert committed(database_url) == 3  # none of the failed batch, all of the others
