"""Encryption at rest in the SQL store (docs/encryption.md), on SQLite and PostgreSQL: sealed
bodies, per-patient keys, blind-index search, refusals, shredding, rotation, re-encryption and
the failure messages."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from search_helpers import T0, delete, find, indexer, put, spec

from medarchive.crypto.encryption import Encryption, compartment_owner
from medarchive.crypto.envelope import Erased, KeyUnavailable, is_sealed
from medarchive.crypto.kek import LocalKeyFile
from medarchive.errors import BadRequest, NotFound
from medarchive.store import open_store
from medarchive.store.base import HistoryQuery, iter_changes
from medarchive.store.sql.keyadmin import reencrypt, rotate, shred, status
from medarchive.store.sql.store import SqlStore

ANN = {"resourceType": "Patient", "id": "ann", "birthDate": "1990-06-06",
       "name": [{"family": "Smithers", "given": ["Ann"]}],
       "identifier": [{"system": "urn:mrn", "value": "MRN-4711"}],
       "telecom": [{"system": "phone", "value": "555-0101"},
                   {"system": "email", "value": "ann@example.org"}],
       "address": [{"city": "Cedar Falls", "postalCode": "95595"}]}
BOB = {"resourceType": "Patient", "id": "bob", "birthDate": "1985",
       "name": [{"family": "Smith", "given": ["Bob"]}],
       "identifier": [{"system": "urn:mrn", "value": "MRN-0815"}]}
OBS = {"resourceType": "Observation", "id": "o1", "status": "final",
       "code": {"text": "pulse"}, "subject": {"reference": "Patient/ann"}}
ORG = {"resourceType": "Organization", "id": "org", "name": "Smithfield Clinic"}


def encryption(key_file: Path) -> Encryption:
    return Encryption(LocalKeyFile(key_file), compartment_owner(spec()))


@pytest.fixture
def opened(sql_url: str, tmp_path: Path) -> Iterator[Any]:
    stores: list[Any] = []

    def open_(key_file: Path = tmp_path / "k.kek", encrypted: bool = True) -> SqlStore:
        store = open_store(sql_url, indexer(), pool_size=2,
                           encryption=encryption(key_file) if encrypted else None)
        stores.append(store)
        assert isinstance(store, SqlStore)
        return store
    yield open_
    for store in stores:
        store.close()


@pytest.fixture
def store(opened: Any) -> SqlStore:
    s: SqlStore = opened()
    put(s, ANN, BOB, OBS, ORG)
    return s


def raw_rows(store: SqlStore) -> list[tuple[str, str, int | None, bytes]]:
    with store.db.reading() as cur:
        cur.execute("SELECT r.res_type, r.res_id, v.kid, v.body FROM resource_version v "
                    "JOIN resource r ON r.rid = v.rid")
        return [(t, i, k, bytes(b)) for t, i, k, b in cur.fetchall()]


def index_text(store: SqlStore) -> str:
    with store.db.reading() as cur:
        parts = []
        for table in ("idx_string", "idx_token"):
            cur.execute(f"SELECT * FROM {table}")
            parts += [repr(row) for row in cur.fetchall()]
    return "\n".join(parts)


def test_bodies_are_sealed_per_patient_and_read_back(store: SqlStore) -> None:
    rows = {(t, i): (kid, body) for t, i, kid, body in raw_rows(store)}
    assert all(is_sealed(body) and kid for kid, body in rows.values())
    assert rows["Patient", "ann"][0] == rows["Observation", "o1"][0]  # ann's compartment key
    assert rows["Patient", "ann"][0] != rows["Patient", "bob"][0]
    assert rows["Organization", "org"][0] not in (rows["Patient", "ann"][0],
                                                  rows["Patient", "bob"][0])
    version = store.read("Patient", "ann")
    assert version is not None and version.resource() == ANN


def test_identifying_values_are_never_in_the_index(store: SqlStore) -> None:
    text = index_text(store)
    for secret in ("smithers", "Smithers", "MRN-4711", "555-0101", "ann@example.org",
                   "cedar", "95595", "1990"):
        assert secret not in text
    assert "smithfield" in text  # an Organization's name stays searchable in plaintext


@pytest.mark.parametrize(("query", "expected"), [
    ("family=smi", ["ann", "bob"]), ("family=smithe", ["ann"]), ("family=smithersx", []),
    ("family:exact=Smith", ["bob"]), ("family:exact=smith", []), ("given=an", ["ann"]),
    ("name=bob", ["bob"]), ("address-city=cedar f", ["ann"]), ("address=95595", ["ann"]),
    ("birthdate=1990", ["ann"]), ("birthdate=1990-06", ["ann"]),
    ("birthdate=1990-06-06", ["ann"]), ("birthdate=1985", ["bob"]),
    ("birthdate=1985-01", []), ("birthdate=1990-06-07", []),
    ("identifier=MRN-4711", ["ann"]), ("identifier=urn:mrn|MRN-0815", ["bob"]),
    ("identifier=urn:other|MRN-0815", []), ("identifier=urn:mrn|", ["ann", "bob"]),
    ("identifier:not=MRN-4711", ["bob"]), ("phone=555-0101", ["ann"]),
    ("email=ann@example.org", ["ann"]), ("telecom=phone|555-0101", ["ann"]),
    ("_content=smithe", ["ann"]), ("birthdate:missing=false", ["ann", "bob"]),
    ("_sort=_id&family=smi", ["ann", "bob"]),
])
def test_blind_index_search_matches_the_memory_semantics(store: SqlStore, query: str,
                                                         expected: list[str]) -> None:
    assert find(store, "Patient", query) == expected


def test_chains_and_other_types_still_search(store: SqlStore) -> None:
    assert find(store, "Observation", "subject:Patient.family=smithers") == ["o1"]
    assert find(store, "Observation", "subject:Patient.birthdate=1990-06") == ["o1"]
    assert find(store, "Patient", "_has:Observation:subject:status=final") == ["ann"]
    assert find(store, "Organization", "name:contains=field") == ["org"]
    assert find(store, None, "_type=Patient,Organization&name=smith") == ["ann", "bob", "org"]
    assert find(store, None, "_type=Patient,Organization&_content=smith") == \
        ["ann", "bob", "org"]


@pytest.mark.parametrize("query", ["name:contains=mit", "family:contains=s", "_sort=family",
                                   "_sort=-birthdate", "_sort=identifier", "birthdate=gt1980",
                                   "birthdate=ne1990", "birthdate=ap1990",
                                   f"family={'x' * 65}"])
def test_what_a_blind_index_cannot_answer_is_refused(store: SqlStore, query: str) -> None:
    with pytest.raises(BadRequest, match="encryption at rest"):
        find(store, "Patient", query)


def test_shred_erases_a_patient_everywhere(store: SqlStore, opened: Any) -> None:
    put(store, {**ANN, "active": True})  # a second version of ann
    report = shred(store.keyring, "ann")
    assert (report.owner, report.keys, report.resources, report.versions) == \
        ("Patient/ann", 1, 2, 3)
    for rtype, rid in (("Patient", "ann"), ("Observation", "o1")):
        with pytest.raises(Erased, match="was erased") as caught:
            store.read(rtype, rid)
        assert caught.value.status == 410
    with pytest.raises(Erased):
        store.vread("Patient", "ann", 1)
    assert find(store, "Patient", "family=smi") == ["bob"]
    assert find(store, "Observation", "status=final") == []
    history = store.history(HistoryQuery("Patient", "ann"))
    assert [(v.version_id, v.deleted, v.body) for v in history] == [(2, True, b""),
                                                                    (1, True, b"")]
    feed = list(iter_changes(store))
    assert {(v.id, v.deleted) for v in feed if v.id in ("ann", "o1")} == {("ann", True),
                                                                        ("o1", True)}
    assert store.read("Patient", "bob") is not None
    other = opened()  # a second process: nothing cached, same answer
    with pytest.raises(Erased):
        other.read("Patient", "ann")
    with pytest.raises(NotFound):
        shred(store.keyring, "Patient/ann")
    with pytest.raises(BadRequest):
        shred(store.keyring, "Observation/o1")


def key_of(store: SqlStore, owner: str) -> int:
    with store.db.reading() as cur:
        cur.execute(store.db.sql("SELECT kid FROM data_key WHERE owner = ? AND retired IS NULL"),
                    (owner,))
        return int(cur.fetchone()[0])


def test_a_shred_by_another_process_takes_effect_at_the_next_read(store: SqlStore,
                                                                  opened: Any) -> None:
    server = opened()  # another process, with ann's key in memory from the reads below
    assert server.read("Patient", "ann") is not None
    assert server.vread("Observation", "o1", 1) is not None
    assert find(server, "Observation", "status=final") == ["o1"]
    shred(store.keyring, "ann")  # committed by the first process between two reads
    for rtype, rid in (("Patient", "ann"), ("Observation", "o1")):
        with pytest.raises(Erased, match="was erased"):
            server.read(rtype, rid)
        with pytest.raises(Erased, match="was erased"):
            server.vread(rtype, rid, 1)
    assert find(server, "Observation", "status=final") == []
    assert [(v.deleted, v.body) for v in server.history(HistoryQuery("Patient", "ann"))] == \
        [(True, b"")]
    assert {v.id for v in iter_changes(server) if not v.deleted} == {"bob", "org"}
    assert server.read("Patient", "bob") is not None


def test_a_body_opens_only_with_the_key_its_row_names(store: SqlStore, opened: Any) -> None:
    server = opened()
    assert server.read("Patient", "ann") is not None and server.read("Patient", "bob")
    ann, bob = key_of(store, "Patient/ann"), key_of(store, "Patient/bob")
    shred(store.keyring, "ann")
    with store.db.writing() as cur:  # ann's rows pointed at a live key: still not readable
        cur.execute(store.db.sql("UPDATE resource_version SET kid = ? WHERE kid = ?"),
                    (bob, ann))
    with pytest.raises(KeyUnavailable, match="failed authentication"):
        server.read("Patient", "ann")
    with store.db.writing() as cur:  # a key row deleted: not used from memory either
        cur.execute(store.db.sql("DELETE FROM data_key WHERE kid = ?"), (bob,))
    with pytest.raises(KeyUnavailable, match=f"data key {bob} is not in the database"):
        server.read("Patient", "bob")


def test_reencryption_by_another_process_takes_effect_at_the_next_read(store: SqlStore,
                                                                       opened: Any) -> None:
    server = opened()
    assert server.read("Observation", "o1") is not None
    old = key_of(store, "Patient/ann")
    reencrypt(store.keyring, store.owner_of, "ann", destroy_old=True)
    new = key_of(store, "Patient/ann")
    assert new != old
    assert server.read("Observation", "o1").resource() == OBS  # type: ignore[union-attr]
    assert {kid for t, i, kid, _ in raw_rows(store) if i in ("ann", "o1")} == {new}


def test_rotate_rewraps_while_another_store_keeps_working(store: SqlStore, opened: Any,
                                                          tmp_path: Path) -> None:
    server = opened()  # a running server with its keys cached
    assert server.read("Patient", "ann") is not None
    report = rotate(store.keyring)
    assert report.kek == "local-2" and report.rewrapped == 4 and report.retired == ["local-1"]
    assert set(orjson.loads((tmp_path / "k.kek").read_bytes())["keys"]) == {"local-2"}
    put(server, {**BOB, "active": True})  # the server still writes and reads
    fresh = opened()  # a new process unwraps everything under the new KEK
    assert [fresh.read(t, i) is not None for t, i in (("Patient", "ann"), ("Patient", "bob"),
                                                      ("Organization", "org"))] == [True] * 3
    assert find(fresh, "Patient", "family=smi") == ["ann", "bob"]
    assert status(fresh.keyring).by_kek == {"local-2": 4}


def test_reencrypt_gives_new_keys_and_reseals(store: SqlStore, opened: Any) -> None:
    before = {(t, i): kid for t, i, kid, _ in raw_rows(store)}
    report = reencrypt(store.keyring, store.owner_of, "ann", destroy_old=True)
    assert (report.retired_keys, report.resealed, report.destroyed_keys) == (1, 2, 1)
    after = {(t, i): kid for t, i, kid, _ in raw_rows(store)}
    assert after["Patient", "ann"] != before["Patient", "ann"]
    assert after["Observation", "o1"] == after["Patient", "ann"]
    assert after["Patient", "bob"] == before["Patient", "bob"]
    fresh = opened()
    assert fresh.read("Observation", "o1") is not None
    everyone = reencrypt(store.keyring, store.owner_of)
    assert (everyone.retired_keys, everyone.resealed) == (3, 4)


def test_plaintext_rows_are_read_then_sealed_and_reindexed(opened: Any) -> None:
    plain = opened(encrypted=False)
    put(plain, ANN, OBS)
    delete(plain, "Observation", "o1")
    store = opened()
    assert store.read("Patient", "ann") is not None  # old plaintext rows stay readable
    report = reencrypt(store.keyring, store.owner_of)
    assert report.sealed_plaintext == 2
    assert all(is_sealed(b) for _, _, _, b in raw_rows(store) if b)
    store.reindex(restart=True)
    assert "smithers" not in index_text(store)
    assert find(store, "Patient", "family=smithers") == ["ann"]


def test_missing_or_wrong_keys_fail_clearly(store: SqlStore, opened: Any,
                                            tmp_path: Path) -> None:
    with pytest.raises(KeyUnavailable, match="encryption = on"):
        opened(encrypted=False).read("Patient", "ann")
    with pytest.raises(KeyUnavailable, match=r"wrong key file|does not unwrap"):
        opened(tmp_path / "other.kek")
    (tmp_path / "k.kek").chmod(0o644)
    with pytest.raises(KeyUnavailable, match="chmod 600"):
        LocalKeyFile(tmp_path / "k.kek")


def test_written_versions_and_deletions(store: SqlStore) -> None:
    delete(store, "Organization", "org")
    assert store.read("Organization", "org").deleted  # type: ignore[union-attr]
    assert store.vread("Organization", "org", 1).resource() == ORG  # type: ignore[union-attr]
    versions = store.history(HistoryQuery("Organization", "org"))
    assert [(v.version_id, v.deleted, v.body == b"") for v in versions] == \
        [(2, True, True), (1, False, False)]
    assert versions[1].last_updated == T0 + timedelta(microseconds=3)
