"""The device pipeline of one server: raw readings table, landing and materializer together.

``open_pipeline(services)`` (called by ``app.build_devices``) picks the table for the store: on
SQL stores ``device_reading`` (migration 0008) reached through a ``SharedTransaction`` of the
store's database, so the materializer's Observations and the marks on their rows commit in one
transaction, and a second ``SqlStore`` over that transaction whose ``write_prepared`` takes the
index rows the materializer made before the transaction (as the bulk import's pool does); on
the memory store the in-memory twins. With encryption at rest the raw rows are sealed under
their patients' data keys by the store's keyring (``devices.sealed``). The materializer's NEWS2
alerts go out through the channels the settings name (``devices.notify.build_notifier``).
With security on, each materializer transaction records one AuditEvent inside it
(``devices.audit.audited_write``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from medarchive.devices.audit import audited_write
from medarchive.devices.landing import Landing
from medarchive.devices.materializer import Materializer
from medarchive.devices.notify import build_notifier
from medarchive.devices.raw import MemoryReadings, Readings, SqlReadings
from medarchive.devices.sealed import RowSealer
from medarchive.devices.vitals import VitalSigns
from medarchive.store.base import Change


@dataclass
class Pipeline:
    """The parts; ``close`` stops the materializer thread if it was started, then the
    alert notifier's."""

    readings: Readings
    landing: Landing
    materializer: Materializer

    def close(self) -> None:
        self.materializer.stop()
        if self.materializer.notifier is not None:
            self.materializer.notifier.close()


def open_pipeline(services: Any, *, batch: int = 500, keep_s: float = 86_400,
                  assignment_ttl_s: float = 5.0, shard: tuple[int, int] = (0, 1)) -> Pipeline:
    """The pipeline over ``services`` (``app.Services``); the materializer is not started."""
    from medarchive.fhir.search.index import build_indexer
    from medarchive.mllp.transaction import NoTransaction, SharedTransaction

    repository = services.repository
    indexer = build_indexer(services.spec)
    db = getattr(services.store, "db", None)
    readings: Readings
    write: Callable[[Sequence[Change], list[Any], list[str]], Any]
    if db is None:
        readings = MemoryReadings()
        transactions: Any = NoTransaction()
        vitals = VitalSigns(indexer)

        def write(changes: Sequence[Change], rows: list[Any], owners: list[str]) -> None:
            services.store.write(changes)
    else:
        from medarchive.store.sql.store import SqlStore
        keyring = getattr(services.store, "keyring", None)
        sealer = RowSealer(keyring) if keyring is not None else None
        readings = SqlReadings(db, sealer)
        transactions = SharedTransaction(db)
        write = SqlStore(transactions, indexer, run_migrations=False,
                         encryption=keyring.encryption if keyring else None).write_prepared
        vitals = VitalSigns(indexer, keyring.blind if keyring is not None else None)
        readings_in_group = SqlReadings(transactions, sealer)
    guard = services.security.guard if services.security is not None else None
    if guard is not None:  # one AuditEvent per materializer transaction, committed with it
        write = audited_write(write, guard.trail,
                              shared=db is not None and db is guard.trail.db)
    landing = Landing(readings, services.router, guard=guard, now=repository.now,
                      assignment_ttl_s=assignment_ttl_s)
    materializer = Materializer(
        repository, services.router, readings if db is None else readings_in_group,
        transactions, write, vitals, batch=batch, keep_s=keep_s, shard=shard,
        notifier=build_notifier(services.settings, services.router))
    return Pipeline(readings, landing, materializer)
