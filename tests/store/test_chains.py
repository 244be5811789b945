"""store.sql.chains: blind string rows written one per prefix (before prefix chains) are
re-extracted when a store with encryption opens the database, once, and searches find them."""

from __future__ import annotations

import hmac
from base64 import urlsafe_b64encode
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from medarchive.crypto.blind import BLIND_TYPES
from medarchive.crypto.encryption import Encryption, compartment_owner
from medarchive.crypto.kek import LocalKeyFile
from medarchive.fhir.search.index import build_indexer
from medarchive.fhir.search.parse import parse_search
from medarchive.store import open_store
from medarchive.store.base import Change
from medarchive.store.sql.chains import JOB
from medarchive.store.sql.store import SqlStore

PATIENTS = [
    {"resourceType": "Patient", "id": "ann", "name": [{"family": "Smith", "given": ["Ann"]}],
     "address": [{"city": "Boston"}]},
    {"resourceType": "Patient", "id": "lee", "name": [{"family": "Smithers", "given": ["Lee"]}]},
    {"resourceType": "Person", "id": "per", "name": [{"family": "Lee", "given": ["Ann"]}]},
]
SEARCHES = [("Patient", "family", "smi", ["ann", "lee"]), ("Patient", "family", "smithe", ["lee"]),
            ("Patient", "name", "ann", ["ann"]), ("Patient", "address-city", "bos", ["ann"]),
            ("Patient", "_content", "lee", ["lee"]), ("Person", "given", "an", ["per"]),
            ("Patient", "family:exact", "Smith", ["ann"])]
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _open(url: str, folder: Path, spec: Any) -> SqlStore:
    encryption = Encryption(LocalKeyFile(folder / "k.kek"), compartment_owner(spec))
    store = open_store(url, build_indexer(spec), encryption=encryption, pool_size=2)
    assert isinstance(store, SqlStore)
    return store


def _per_prefix(key: bytes, param: str, text: str) -> list[str]:
    """The rows an earlier version wrote for a text: HMAC("p" | param | prefix), 128 bits."""
    return [urlsafe_b64encode(hmac.digest(key, f"p\x1f{param}\x1f{text[:n]}".encode(),
                                          "sha256")[:16]).decode()[:22]
            for n in range(1, len(text) + 1)]


def _rewrite_as_before(store: SqlStore, spec: Any) -> None:
    """Replace the blinded types' string rows (birth dates aside) with per-prefix rows."""
    assert store.keyring is not None
    key, plain = store.keyring.blind._key, build_indexer(spec)
    sql = store.db.sql
    with store.db.writing() as cur:
        for resource in PATIENTS:
            cur.execute(sql("SELECT rid FROM resource WHERE res_type = ? AND res_id = ?"),
                        (resource["resourceType"], resource["id"]))
            (rid,) = cur.fetchone()
            cur.execute(sql("DELETE FROM idx_string WHERE rid = ?"), (rid,))
            for entry in plain(resource).strings:
                rows = _per_prefix(key, entry.param, entry.value)
                for n, row in enumerate(rows, 1):
                    exact = "" if n < len(rows) else urlsafe_b64encode(hmac.digest(
                        key, f"e\x1f{entry.param}\x1f{entry.exact}".encode(),
                        "sha256")[:16]).decode()[:22]
                    cur.execute(sql("INSERT INTO idx_string (rid, res_type, param, value, exact) "
                                    "VALUES (?, ?, ?, ?, ?)"),
                                (rid, resource["resourceType"], entry.param, row, exact))
        cur.execute(sql("DELETE FROM reindex_job WHERE job = ?"), (JOB,))


def _found(store: SqlStore, spec: Any) -> list[list[str]]:
    return [sorted(v.id for v in store.search(parse_search(
        spec, rtype, [(param, text)], default_count=50, max_count=50).query))
        for rtype, param, text, _ in SEARCHES]


def _per_prefix_rows(store: SqlStore) -> int:
    with store.db.reading() as cur:
        cur.execute(store.db.sql("SELECT COUNT(*) FROM idx_string WHERE param <> ? "
                                 "AND length(value) = 22"), ("birthdate",))
        return int(cur.fetchone()[0])


def test_per_prefix_rows_are_re_extracted_once_at_open(sql_url: str, tmp_path: Path,
                                                       spec: Any) -> None:
    store = _open(sql_url, tmp_path, spec)
    try:
        store.write([Change(r["resourceType"], r["id"], 1, 0, T0, False, orjson.dumps(r), r)
                     for r in PATIENTS])
        assert _found(store, spec) == [expected for *_, expected in SEARCHES]
        _rewrite_as_before(store, spec)
        assert _per_prefix_rows(store) > 20
        assert _found(store, spec) != [expected for *_, expected in SEARCHES]
    finally:
        store.close()
    store = _open(sql_url, tmp_path, spec)
    try:
        assert _per_prefix_rows(store) == 0
        assert _found(store, spec) == [expected for *_, expected in SEARCHES]
        with store.db.reading() as cur:
            cur.execute(store.db.sql("SELECT done, finished FROM reindex_job WHERE job = ?"),
                        (JOB,))
            done, finished = cur.fetchone()
        assert done == len(PATIENTS) and finished
    finally:
        store.close()


def test_a_new_database_is_marked_chained_without_a_reindex(sql_url: str, tmp_path: Path,
                                                            spec: Any) -> None:
    store = _open(sql_url, tmp_path, spec)
    try:
        with store.db.reading() as cur:
            cur.execute(store.db.sql("SELECT done, finished FROM reindex_job WHERE job = ?"),
                        (JOB,))
            done, finished = cur.fetchone()
        assert done == 0 and finished
        assert sorted(BLIND_TYPES) == ["Patient", "Person", "RelatedPerson"]
    finally:
        store.close()
