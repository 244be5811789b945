"""Backups of a database encrypted at rest (docs/encryption.md), on SQLite and PostgreSQL: the
sealed copy of the search index, and shredded patients staying erased through a restore."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from medarchive.backup.archive import files, read_rows
from medarchive.backup.errors import BackupError
from medarchive.backup.indeximage import PIECES
from medarchive.backup.keys import BackupKey
from medarchive.backup.restore import plan_restore, reindex_with, restore
from medarchive.backup.snapshot import create_backup
from medarchive.backup.verify import verify_backup
from medarchive.crypto.encryption import Encryption, compartment_owner
from medarchive.crypto.envelope import Erased, KeyUnavailable
from medarchive.crypto.kek import LocalKeyFile
from medarchive.fhir.search.index import build_indexer
from medarchive.fhir.search.parse import parse_search
from medarchive.fhir.spec import load_spec
from medarchive.store import open_store
from medarchive.store.base import Change
from medarchive.store.sql.indexing import INDEX_TABLES
from medarchive.store.sql.keyadmin import rotate, shred
from medarchive.store.sql.store import SqlStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ANN = {"resourceType": "Patient", "id": "ann", "name": [{"family": "Smithers"}],
       "identifier": [{"system": "urn:mrn", "value": "MRN-4711"}]}
BOB = {"resourceType": "Patient", "id": "bob", "name": [{"family": "Jones"}]}
OBS = {"resourceType": "Observation", "id": "o1", "status": "final",
       "code": {"text": "pulse"}, "subject": {"reference": "Patient/ann"},
       "valueQuantity": {"value": 71, "unit": "/min"}}


def write(store: SqlStore, *resources: dict[str, Any], minute: int = 0) -> None:
    changes = []
    for res in resources:
        current = store.read(res["resourceType"], res["id"])
        version = current.version_id + 1 if current else 1
        changes.append(Change(res["resourceType"], res["id"], version,
                              current.version_id if current else 0,
                              T0 + timedelta(minutes=minute), False, orjson.dumps(res), res))
    store.write(changes)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'source.db'}"
    return str(request.getfixturevalue("postgres_schema_url"))


@pytest.fixture
def kek_file(tmp_path: Path) -> Path:
    return tmp_path / "medarchive.kek"


@pytest.fixture
def opened(kek_file: Path) -> Iterator[Any]:
    stores: list[SqlStore] = []

    def open_(url: str) -> SqlStore:
        store = open_store(url, build_indexer(load_spec()), pool_size=2,
                           encryption=encryption(kek_file))
        assert isinstance(store, SqlStore)
        stores.append(store)
        return store
    yield open_
    for store in stores:
        store.close()


def encryption(kek_file: Path) -> Encryption:
    return Encryption(LocalKeyFile(kek_file), compartment_owner(load_spec()))


def index_rows(store: SqlStore) -> dict[str, list[tuple[Any, ...]]]:
    with store.db.reading() as cur:
        found = {}
        for table in INDEX_TABLES:
            cur.execute(f"SELECT * FROM {table}")
            found[table] = sorted((tuple(row) for row in cur.fetchall()), key=repr)
        return found


def restored(tmp_path: Path, name: str) -> str:
    return f"sqlite:///{tmp_path / name}"


def test_index_copy_is_sealed_and_restores_the_same_index(
        tmp_path: Path, key: BackupKey, url: str, kek_file: Path, opened: Any) -> None:
    source = opened(url)
    write(source, ANN, BOB, OBS)
    kek = encryption(kek_file).kek
    create_backup(source.db, tmp_path / "b", key, kek=kek)
    write(source, {**BOB, "name": [{"family": "Jonas"}]}, minute=5)
    create_backup(source.db, tmp_path / "b", key, incremental=True, kek=kek)
    plan = plan_restore(tmp_path / "b", key)
    full = plan.chain[0]
    assert full.manifest["index"]["sealed"]["kek"] == kek.current()
    entry = next(e for table, e in files(full) if table in ("idx_token", PIECES))
    with pytest.raises(BackupError, match="damaged"):  # the backup key alone does not open it
        read_rows(full, entry, key)
    target = restored(tmp_path, "r.db")
    result = restore(plan, key, target, kek=kek,
                     reindex=reindex_with(build_indexer(load_spec()), encryption(kek_file)))
    assert result.index_copied
    again = opened(target)
    assert index_rows(again) == index_rows(source)
    assert [v.id for v in again.search(_family("Jonas"))] == ["bob"]
    assert verify_backup(tmp_path / "b", key, full.id, kek=kek).ok


def _family(name: str) -> Any:
    return parse_search(load_spec(), "Patient", [("family", name)]).query


def test_without_the_kek_the_index_is_re_extracted(
        tmp_path: Path, key: BackupKey, url: str, kek_file: Path, opened: Any) -> None:
    source = opened(url)
    write(source, ANN, BOB, OBS)
    note = create_backup(source.db, tmp_path / "plain", key).note
    assert "search index not copied" in note
    create_backup(source.db, tmp_path / "b", key, kek=encryption(kek_file).kek)
    for folder, name in (("plain", "a.db"), ("b", "b.db")):
        target = restored(tmp_path, name)
        result = restore(plan_restore(tmp_path / folder, key), key, target,
                         reindex=reindex_with(build_indexer(load_spec()), encryption(kek_file)))
        assert not result.index_copied
        assert index_rows(opened(target)) == index_rows(source)


def test_shredded_patient_stays_erased_when_an_older_backup_is_restored(
        tmp_path: Path, key: BackupKey, url: str, kek_file: Path, opened: Any) -> None:
    source = opened(url)
    write(source, ANN, BOB, OBS)
    kek = encryption(kek_file).kek
    older = create_backup(source.db, tmp_path / "b", key, kek=kek).backup_id
    assert source.keyring is not None
    shred(source.keyring, "Patient/ann")
    create_backup(source.db, tmp_path / "b", key, kek=kek)  # the documented step after a shred
    target = restored(tmp_path, "r.db")
    restore(plan_restore(tmp_path / "b", key, backup_id=older), key, target, kek=kek,
            reindex=reindex_with(build_indexer(load_spec()), encryption(kek_file)))
    back = opened(target)
    for rtype, rid in (("Patient", "ann"), ("Observation", "o1")):
        with pytest.raises(Erased):
            back.read(rtype, rid)
    assert back.read("Patient", "bob") is not None
    assert back.search(_family("Smithers")) == []
    with back.db.reading() as cur:
        cur.execute("SELECT COUNT(*) FROM idx_param p JOIN resource r ON r.rid = p.rid "
                    "WHERE r.res_id IN ('ann', 'o1')")
        assert cur.fetchone()[0] == 0


def test_restoring_over_the_shredded_database_keeps_its_shreds(
        tmp_path: Path, key: BackupKey, kek_file: Path, opened: Any) -> None:
    live = restored(tmp_path, "live.db")
    source = opened(live)
    write(source, ANN, BOB, OBS)
    create_backup(source.db, tmp_path / "b", key, kek=encryption(kek_file).kek)
    assert source.keyring is not None
    shred(source.keyring, "Patient/ann")  # and no backup since
    source.close()
    restore(plan_restore(tmp_path / "b", key), key, live, force=True,
            kek=encryption(kek_file).kek,
            reindex=reindex_with(build_indexer(load_spec()), encryption(kek_file)))
    with pytest.raises(Erased):
        opened(live).read("Patient", "ann")


def test_after_shred_and_rotate_older_backups_no_longer_open(
        tmp_path: Path, key: BackupKey, kek_file: Path, opened: Any) -> None:
    source = opened(restored(tmp_path, "live.db"))
    write(source, ANN, BOB, OBS)
    create_backup(source.db, tmp_path / "b", key, kek=encryption(kek_file).kek)
    assert source.keyring is not None
    shred(source.keyring, "Patient/ann")
    rotate(source.keyring)  # retires the KEK version that wrapped the old backup's keys
    target = tmp_path / "r.db"
    with pytest.raises(KeyUnavailable):
        restore(plan_restore(tmp_path / "b", key), key, f"sqlite:///{target}",
                kek=encryption(kek_file).kek,
                reindex=reindex_with(build_indexer(load_spec()), encryption(kek_file)))
    assert not target.exists() and not Path(f"{target}.restoring").exists()


def test_a_sqlite_index_image_restores_into_postgres(
        tmp_path: Path, key: BackupKey, kek_file: Path, opened: Any,
        postgres_schema_url: str) -> None:
    source = opened(f"sqlite:///{tmp_path / 'source.db'}")
    coded = {**OBS, "id": "o2", "code": {"coding": [{"system": "http://loinc.org",
                                                     "code": "8867-4"}]}}
    write(source, ANN, BOB, OBS, coded)
    kek = encryption(kek_file).kek
    create_backup(source.db, tmp_path / "b", key, kek=kek)
    plan = plan_restore(tmp_path / "b", key)
    assert any(table == PIECES for table, _ in files(plan.chain[0]))
    result = restore(plan, key, postgres_schema_url, kek=kek)
    assert result.index_copied

    def plain(rows: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
        return {table: sorted((tuple(int(v) if isinstance(v, bool) else v for v in row)
                               for row in found), key=repr) for table, found in rows.items()}
    copied = plain(index_rows(opened(postgres_schema_url)))
    assert copied == plain(index_rows(source))
    assert copied["idx_composite"] and copied["idx_string"]
