"""Helpers of the backup tests: a tiny indexer, known versions at known times, rows in the
security and audit tables, and the backend-neutral state a restore must reproduce."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from medarchive.fhir.search.entries import IndexEntries, StringEntry
from medarchive.security.audit import chain_hash
from medarchive.store.base import Change, Store
from medarchive.store.sql.store import SqlStore

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def family_indexer(resource: dict[str, Any]) -> IndexEntries:
    names = [StringEntry("family", n["family"].lower(), n["family"])
             for n in resource.get("name", []) if "family" in n]
    return IndexEntries(strings=tuple(names), params=frozenset(e.param for e in names))


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def put(store: Store, rtype: str, rid: str, when: datetime, *, family: str = "Doe",
        deleted: bool = False) -> int:
    """Write the next version of ``rtype/rid`` at ``when``; return its version number."""
    current = store.read(rtype, rid)
    version = current.version_id + 1 if current else 1
    resource = None if deleted else {"resourceType": rtype, "id": rid,
                                     "meta": {"versionId": str(version)},
                                     "name": [{"family": family}]}
    body = b"" if resource is None else orjson.dumps(resource)
    store.write([Change(rtype, rid, version, current.version_id if current else 0, when,
                        deleted, body, resource)])
    return version


def add_security_rows(store: Store, n: int = 3) -> None:
    db = store.db  # type: ignore[attr-defined]
    with db.writing() as cur:
        for i in range(n):
            cur.execute(db.sql("INSERT INTO sec_user (username, password_hash, role, created) "
                               "VALUES (?, ?, ?, ?)"), (f"user{i}", "x" * 10, "clinician", i))
        cur.execute("SELECT seq, hash FROM audit_head WHERE id = 1")
        seq, prev = cur.fetchone()
        for i in range(n):
            seq += 1
            body = f'{{"n":{i}}}'
            digest = chain_hash(prev, seq, body)
            cur.execute(db.sql("INSERT INTO audit_event (seq, recorded, body, prev_hash, hash) "
                               "VALUES (?, ?, ?, ?, ?)"), (seq, i, body, prev, digest))
            prev = digest
        cur.execute(db.sql("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1"),
                    (seq, prev))


def state(store: SqlStore) -> dict[str, Any]:
    """Everything a restore must reproduce, in a backend-neutral form."""
    db = store.db
    with db.reading() as cur:
        cur.execute("SELECT r.res_type, r.res_id, v.version, v.last_updated, v.deleted, v.body "
                    "FROM resource_version v JOIN resource r ON r.rid = v.rid ORDER BY v.seq")
        versions = [(a, b, c, d, bool(e), bytes(f)) for a, b, c, d, e, f in cur.fetchall()]
        cur.execute("SELECT res_type, res_id, version, last_updated, deleted FROM resource "
                    "ORDER BY res_type, res_id")
        resources = [(a, b, c, d, bool(e)) for a, b, c, d, e in cur.fetchall()]
        cur.execute("SELECT username, role FROM sec_user ORDER BY username")
        users = [tuple(r) for r in cur.fetchall()]
        cur.execute("SELECT seq, hash FROM audit_event ORDER BY seq")
        audit = [tuple(r) for r in cur.fetchall()]
        cur.execute("SELECT seq, hash FROM audit_head")
        head = [tuple(r) for r in cur.fetchall()]
        cur.execute("SELECT rid, value FROM idx_string ORDER BY value")
        index = sorted(v for _, v in cur.fetchall())
    return {"versions": versions, "resources": resources, "users": users, "audit": audit,
            "head": head, "index": index}
