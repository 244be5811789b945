"""``Store.latest_vital_signs``: per vital-sign code, the Observation a ``_sort=-date`` search
returns first, on every backend, through creates, updates (newer, older, another code or
patient) and deletions of the newest one; the SQL stores keep it in ``latest_observation``
(``store.sql.latest``) in the write's transaction, fill it from the index when it was never
derived there (an upgraded or restored database), and a rebuild gives the rows kept.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from search_helpers import delete, find, indexer, put, spec

from medarchive.backup.keys import load_key
from medarchive.backup.restore import plan_restore, reindex_with, restore
from medarchive.backup.schema import strategy
from medarchive.backup.snapshot import create_backup
from medarchive.errors import VersionConflict
from medarchive.fhir.search.custom import only_param
from medarchive.fhir.search.index import build_indexer
from medarchive.fhir.vitalsigns import LOINC, VITAL_SIGNS
from medarchive.store import open_store
from medarchive.store.base import Change, Store
from medarchive.store.sql.latest import JOB, ensure_built, rebuild
from medarchive.store.sql.store import SqlStore

PATIENTS = ("p1", "p2", "p3")
CODES = ("8867-4", "9279-1", "85354-9", "1234-5")  # the last is not a vital sign
TIMES = ("2024-05-01T12:00:00Z", "2024-05-01T12:00:00Z", "2024-05-01T12:05:00+02:00",
         "2024-05-01", "2024-05-02T08:00:00Z", "2023", None, {"start": "2024-04-30"})


def vital(id: str, patient: str, code: str, effective: Any, value: float = 70) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Observation", "id": id, "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": f"Patient/{patient}"},
        "valueQuantity": {"value": value, "unit": "/min"}}
    if isinstance(effective, str):
        resource["effectiveDateTime"] = effective
    elif isinstance(effective, dict):
        resource["effectivePeriod"] = effective
    return resource


def expected(store: Store, patient: str) -> dict[str, str]:
    """What the search gives: the first result per vital-sign code."""
    found = {}
    for code in VITAL_SIGNS:
        first = find(store, "Observation",
                     f"subject=Patient/{patient}&code={LOINC}|{code}&_sort=-date&_count=1")
        if first:
            found[code] = first[0]
    return found


def kept(store: Store, patient: str) -> dict[str, str]:
    return {code: version.id for code, version in store.latest_vital_signs(f"Patient/{patient}")
            .items()}


def agree(store: Store) -> None:
    for patient in PATIENTS:
        assert kept(store, patient) == expected(store, patient), patient


@pytest.fixture
def store(store_factory: Any) -> Store:
    opened: Store = store_factory(indexer())
    return opened


def test_the_newest_follows_updates_and_deletions(store: Store) -> None:
    put(store, vital("a", "p1", "8867-4", "2024-05-01T12:00:00Z", 70),
        vital("b", "p1", "8867-4", "2024-05-01T12:01:00Z", 135),
        vital("c", "p1", "9279-1", "2024-05-01T12:00:00Z"),
        vital("d", "p2", "8867-4", "2024-05-01T13:00:00Z"))
    assert kept(store, "p1") == {"8867-4": "b", "9279-1": "c"}
    assert store.latest_vital_signs("Patient/p1")["8867-4"].resource()["valueQuantity"][
        "value"] == 135
    delete(store, "Observation", "b")  # the newest: the previous one is found again
    assert kept(store, "p1") == {"8867-4": "a", "9279-1": "c"}
    put(store, vital("a", "p1", "8867-4", "2024-05-01T11:00:00Z", 50))  # still the only one
    assert store.latest_vital_signs("Patient/p1")["8867-4"].resource()["valueQuantity"][
        "value"] == 50
    put(store, vital("e", "p1", "8867-4", "2024-05-01T10:00:00Z"))  # older: not the newest
    assert kept(store, "p1")["8867-4"] == "a"
    put(store, vital("a", "p1", "8867-4", "2024-05-01T09:00:00Z"))  # the newest got older
    assert kept(store, "p1")["8867-4"] == "e"
    put(store, vital("e", "p2", "9279-1", "2024-05-01T10:00:00Z"))  # moved to another patient
    assert kept(store, "p1") == {"8867-4": "a", "9279-1": "c"}
    assert kept(store, "p2") == {"8867-4": "d", "9279-1": "e"}
    delete(store, "Observation", "c")
    assert kept(store, "p1") == {"8867-4": "a"}
    assert kept(store, "nobody") == {} and store.latest_vital_signs("Group/p1") == {}
    agree(store)


def test_random_writes_agree_with_the_search(store: Store) -> None:
    """Ties (equal times: the first created wins), partial dates, periods, Observations
    without a date (after every dated one), codes that are not vital signs."""
    rng = random.Random(6)
    live: set[str] = set()
    for _ in range(12):
        batch = {}
        for _ in range(rng.randint(1, 8)):
            id = f"o{rng.randint(0, 30)}"
            if id in live and rng.random() < 0.25:
                continue
            batch[id] = vital(id, rng.choice(PATIENTS), rng.choice(CODES), rng.choice(TIMES),
                              rng.randint(30, 150))
        put(store, *batch.values())
        live.update(batch)
        for id in rng.sample(sorted(live), k=min(len(live), rng.randint(0, 2))):
            delete(store, "Observation", id)
            live.discard(id)
        agree(store)


def test_a_failed_write_changes_nothing(store: Store) -> None:
    put(store, vital("a", "p1", "8867-4", "2024-05-01T12:00:00Z"))
    newer = vital("b", "p1", "8867-4", "2024-05-02T12:00:00Z")
    stale = vital("a", "p1", "8867-4", "2024-05-03T12:00:00Z")
    with pytest.raises(VersionConflict):
        store.write([Change("Observation", "b", 1, 0, store.read("Observation", "a")
                            .last_updated, False, b"{}", newer),  # type: ignore[union-attr]
                     Change("Observation", "a", 3, 2, store.read("Observation", "a")
                            .last_updated, False, b"{}", stale)])  # type: ignore[union-attr]
    assert kept(store, "p1") == {"8867-4": "a"}


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'latest.db'}" if request.param == "sqlite" else \
        str(request.getfixturevalue("postgres_schema_url"))
    opened = open_store(url, indexer())
    assert isinstance(opened, SqlStore)
    yield opened
    opened.close()


def rows(store: SqlStore) -> list[tuple[Any, ...]]:
    with store.db.reading() as cur:
        cur.execute("SELECT patient, system, code, rid, high FROM latest_observation "
                    "ORDER BY patient, code")
        return [tuple(row) for row in cur.fetchall()]


def test_a_rebuild_gives_the_rows_kept(sql_store: SqlStore) -> None:
    rng = random.Random(18)
    for _ in range(6):
        put(sql_store, *[vital(f"o{n}", rng.choice(PATIENTS), rng.choice(CODES),
                               rng.choice(TIMES)) for n in rng.sample(range(25), 6)])
    for id in ("o3", "o4", "o5"):
        if sql_store.read("Observation", id) is not None:
            delete(sql_store, "Observation", id)
    maintained = rows(sql_store)
    assert maintained
    with sql_store.db.writing() as cur:
        rebuild(cur, sql_store.db.sql)
    assert rows(sql_store) == maintained


def test_an_upgraded_or_restored_database_is_filled_from_the_index(
        sql_store: SqlStore) -> None:
    put(sql_store, vital("a", "p1", "8867-4", "2024-05-01T12:00:00Z"),
        vital("b", "p1", "8867-4", "2024-05-01T12:01:00Z"))
    maintained = rows(sql_store)
    with sql_store.db.writing() as cur:  # as after migration 0018 or a restore
        cur.execute("DELETE FROM latest_observation")
        cur.execute(sql_store.db.sql("DELETE FROM reindex_job WHERE job = ?"), (JOB,))
    assert ensure_built(sql_store.db) is True
    assert rows(sql_store) == maintained and ensure_built(sql_store.db) is False


def test_a_restore_derives_the_table_instead_of_copying_it(tmp_path: Path) -> None:
    assert strategy("latest_observation") == "derived"
    source = open_store(f"sqlite:///{tmp_path / 'source.db'}", indexer())
    assert isinstance(source, SqlStore)
    put(source, vital("a", "p1", "8867-4", "2024-05-01T12:00:00Z"),
        vital("b", "p1", "8867-4", "2024-05-01T12:01:00Z"))
    key = load_key(tmp_path / "keys" / "backup.key", create=True)
    create_backup(source.db, tmp_path / "backups", key)
    source.close()
    target = f"sqlite:///{tmp_path / 'restored.db'}"
    restore(plan_restore(tmp_path / "backups", key), key, target,
            reindex=reindex_with(indexer()))
    restored = open_store(target, indexer())
    try:
        assert kept(restored, "p1") == {"8867-4": "b"}
    finally:
        restored.close()


def test_reindexing_a_parameter_it_derives_from_derives_it_again(sql_store: SqlStore) -> None:
    """``db reindex --param date`` rewrites the date rows alone: the table is derived again."""
    put(sql_store, vital("a", "p1", "8867-4", "2024-05-01T12:00:00Z"),
        vital("b", "p1", "8867-4", "2024-05-01T12:01:00Z"))
    maintained = rows(sql_store)
    with sql_store.db.writing() as cur:  # as rows of an older extraction of date would be
        cur.execute("UPDATE latest_observation SET high = 0")
    sql_store.reindex_param(build_indexer(only_param(spec(), "date")), "date",
                            ["Observation"], job="date-again")
    assert rows(sql_store) == maintained
