"""The HL7 message log and idempotency keys in backups: full + incremental backups of a
gateway's database (encryption at rest on) restore its log rows as they were last updated,
dead letters list and replay with their exact bytes, a message sent again is acknowledged
without being applied twice, and a point-in-time restore lets a message wound back apply
again. Restores go across backends both ways."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from medarchive.app import build_gateway
from medarchive.backup.errors import BackupError
from medarchive.backup.keys import BackupKey
from medarchive.backup.restore import plan_restore, reindex_with, restore
from medarchive.backup.snapshot import create_backup
from medarchive.crypto.encryption import Encryption, compartment_owner
from medarchive.crypto.kek import LocalKeyFile
from medarchive.fhir.search.index import build_indexer
from medarchive.fhir.spec import load_spec
from medarchive.mllp.gateway import Gateway
from medarchive.mllp.log import LogEntry, SqlMessageLog
from medarchive.settings import Settings
from medarchive.store.base import to_micros
from medarchive.store.sql.database import open_database
from medarchive.store.sql.migrations import migrate

MSH = ("MSH|^~\\&|HIS|CITYHOSP|ARCHIVE|MEDARCHIVE|20240102030405||ADT^A01^ADT_A01|{ctrl}|P|"
       "2.5.1")


def adt(ctrl: str, mrn: str, family: str) -> bytes:
    return "\r".join([MSH.format(ctrl=ctrl), "EVN|A01|20240102030405",
                      f"PID|1||{mrn}^^^HOSP^MR||{family}^Ann||19800315|F",
                      "PV1|1|I|WARD1^101^A"]).encode() + b"\r"


def refused(ctrl: str, mrn: str, family: str) -> bytes:
    """Refused (AR) for a NUL byte inside the record number; kept as a dead letter."""
    return adt(ctrl, mrn, family).replace(mrn.encode(), mrn[:3].encode() + b"\x00" +
                                          mrn[3:].encode())


@pytest.fixture(params=[("sqlite", "sqlite"), ("sqlite", "postgresql"),
                        ("postgresql", "sqlite")], ids=lambda p: f"{p[0]}-to-{p[1]}")
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    def url(kind: str, name: str) -> str:
        if kind == "sqlite":
            return f"sqlite:///{tmp_path / name}"
        return str(request.getfixturevalue("postgres_schema_url"))
    return url(request.param[0], "source.db"), url(request.param[1], "restored.db")


@contextmanager
def gateway(url: str, tmp_path: Path) -> Iterator[tuple[Gateway, Any]]:
    gw, services = build_gateway(Settings(database_url=url, auth="off", encryption="on",
                                          encryption_key_file=str(tmp_path / "kek")))
    try:
        yield gw, services
    finally:
        gw.close()
        services.close()


def encryption(tmp_path: Path) -> Encryption:
    return Encryption(LocalKeyFile(tmp_path / "kek"), compartment_owner(load_spec()))


def backup(url: str, tmp_path: Path, key: BackupKey, *, incremental: bool) -> None:
    db = open_database(url)
    try:
        create_backup(db, tmp_path / "b", key, incremental=incremental,
                      kek=encryption(tmp_path).kek)
    finally:
        db.close()


def restore_into(url: str, tmp_path: Path, key: BackupKey, until: int | None = None) -> None:
    restore(plan_restore(tmp_path / "b", key, until=until), key, url,
            kek=encryption(tmp_path).kek,
            reindex=reindex_with(build_indexer(load_spec()), encryption(tmp_path)))


def patients(services: Any) -> list[tuple[str, int]]:
    return [(v.id, v.version_id) for v in services.store.changes(0, 100_000)
            if v.resource_type == "Patient"]


def test_log_rows_dead_letters_and_keys_are_restored(urls: tuple[str, str], tmp_path: Path,
                                                     key: BackupKey) -> None:
    source, target = urls
    with gateway(source, tmp_path) as (gw, services):
        assert gw.handle(adt("A1", "MRN111", "One")).code == "AA"
        first_dead = gw.handle(refused("D1", "MRN222", "Two"))
        assert first_dead.code == "AR"
        backup(source, tmp_path, key, incremental=False)
        assert gw.handle(adt("A2", "MRN333", "Three")).code == "AA"
        assert gw.handle(refused("D2", "MRN444", "Four")).code == "AR"
        gw.log.set_status(first_dead.log_id, "discarded", "not ours")  # updated in place
        backup(source, tmp_path, key, incremental=True)
        logged = gw.log.entries()
        written = patients(services)
    restore_into(target, tmp_path, key)
    with gateway(target, tmp_path) as (gw, services):
        assert gw.log.entries() == logged
        [dead] = gw.log.entries(status="dead")
        assert dead.id == logged[3].id and logged[1].status == "discarded"
        assert dead.message_bytes() == refused("D2", "MRN444", "Four")
        again = gw.handle(adt("A2", "MRN333", "Three"))  # the sender sends it again
        assert again.code == "AA" and again.duplicate
        assert patients(services) == written  # not applied twice
        replayed = gw.replay(dead.id, adt("D2", "MRN444", "Four"))
        assert replayed.code == "AA" and replayed.log_id > max(e.id for e in logged)
        assert gw.log.entries(status="dead") == []
        assert len(patients(services)) == len(written) + 1


def test_point_in_time_restore_lets_a_wound_back_message_apply_again(
        urls: tuple[str, str], tmp_path: Path, key: BackupKey) -> None:
    source, target = urls
    with gateway(source, tmp_path) as (gw, services):
        assert gw.handle(adt("A1", "MRN111", "One")).code == "AA"
        backup(source, tmp_path, key, incremental=False)
        assert gw.handle(adt("A2", "MRN222", "Two")).code == "AA"
        moment = to_micros(datetime.now(UTC))
        time.sleep(0.01)  # lastUpdated of the next write is after the moment at any precision
        assert gw.handle(adt("A3", "MRN333", "Three")).code == "AA"
        backup(source, tmp_path, key, incremental=True)
        assert len(patients(services)) == 3
    restore_into(target, tmp_path, key, until=moment)
    with gateway(target, tmp_path) as (gw, services):
        assert len(patients(services)) == 2
        kept = gw.handle(adt("A2", "MRN222", "Two"))
        assert kept.code == "AA" and kept.duplicate
        wound_back = gw.handle(adt("A3", "MRN333", "Three"))
        assert wound_back.code == "AA" and not wound_back.duplicate
        assert len(patients(services)) == 3


def test_a_database_that_took_messages_is_not_an_empty_target(tmp_path: Path,
                                                              key: BackupKey) -> None:
    source = f"sqlite:///{tmp_path / 'source.db'}"
    with gateway(source, tmp_path) as (gw, _):
        assert gw.handle(adt("A1", "MRN111", "One")).code == "AA"
        backup(source, tmp_path, key, incremental=False)
    target = f"sqlite:///{tmp_path / 'target.db'}"
    db = open_database(target)
    try:
        migrate(db)
        SqlMessageLog(db).record(LogEntry(0, "2026-01-01T00:00:00Z", "hl7:F|A|9", "AR", "dead",
                                          "refused", (), (), "MSH|", data=b"MSH|"))
    finally:
        db.close()
    with pytest.raises(BackupError, match="not empty"):
        restore_into(target, tmp_path, key)
