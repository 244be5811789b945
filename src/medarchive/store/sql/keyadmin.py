"""Key administration behind ``medarchive keys``: status, shred, rotate and re-encrypt.

Each operation works in short transactions of at most ``batch`` rows, so a server keeps
serving while it runs (docs/encryption.md "Operations"):

- ``shred``: crypto-shredding of one patient (GDPR art. 17 erasure by key destruction): the
  wrapped data keys are deleted in one transaction, the patient's current resources are marked
  deleted and their index rows removed, and their raw device readings deleted. Every sealed
  copy of their bodies (history, WAL, dumps, backups) is then undecryptable.
- ``rotate``: a new KEK version; every data key is rewrapped under it (the keys themselves and
  so the bodies do not change), then the KEK versions nothing uses any more are retired.
- ``reencrypt``: new data keys (one patient's, or everyone's) and every body re-sealed under
  them, for a data key that may be compromised; plaintext bodies written before encryption was
  on are sealed on the way. Resumable: it re-seals whatever is still under a retired key.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from medarchive.crypto.encryption import BLIND_OWNER
from medarchive.crypto.envelope import body_aad, is_sealed, open_sealed, seal, sealed_kid
from medarchive.errors import BadRequest, NotFound
from medarchive.store.sql.crypto import Keyring, key_context, now_micros
from medarchive.store.sql.indexing import INDEX_TABLES

_CHUNK = 500


@dataclass
class KeyStatus:
    kek_manager: str
    kek_current: str
    kek_versions: list[str]
    keys: dict[str, int] = field(default_factory=dict)  # state -> count
    by_kek: dict[str, int] = field(default_factory=dict)
    sealed_versions: int = 0
    plaintext_versions: int = 0


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def status(keyring: Keyring) -> KeyStatus:
    """Counts of data keys by state and KEK version, and of sealed and plaintext versions."""
    db, sql = keyring.db, keyring.db.sql
    kek = keyring.kek
    report = KeyStatus(kek.name, kek.current(), kek.versions())
    with db.reading() as cur:
        cur.execute("SELECT owner, kek, retired, shredded FROM data_key")
        states: Counter[str] = Counter()
        keks: Counter[str] = Counter()
        for owner, wrapped_by, retired, shredded in cur.fetchall():
            kind = "patient" if owner.startswith("Patient/") else owner
            state = "shredded" if shredded else ("retired" if retired else "active")
            states[f"{kind} {state}"] += 1
            if wrapped_by:
                keks[wrapped_by] += 1
        cur.execute(sql("SELECT COUNT(*) FROM resource_version WHERE kid IS NOT NULL"))
        report.sealed_versions = int(cur.fetchone()[0])
        cur.execute(sql("SELECT COUNT(*) FROM resource_version WHERE kid IS NULL AND "
                        "deleted = ?"), (False,))
        report.plaintext_versions = int(cur.fetchone()[0])
    report.keys, report.by_kek = dict(sorted(states.items())), dict(sorted(keks.items()))
    return report


@dataclass(frozen=True)
class ShredReport:
    owner: str
    keys: int
    versions: int
    resources: int
    readings: int = 0  # raw device readings deleted (docs/ingestion.md)


def patient_owner(patient: str) -> str:
    """``Patient/123`` from ``123`` or ``Patient/123``."""
    pid = patient.removeprefix("Patient/")
    if not pid or "/" in pid:
        raise BadRequest(f"not a patient id: {patient!r}")
    return f"Patient/{pid}"


def shred(keyring: Keyring, patient: str) -> ShredReport:
    """Destroy every data key of ``patient`` and delete their raw device readings (one
    transaction)."""
    owner = patient_owner(patient)
    db, sql = keyring.db, keyring.db.sql
    now = now_micros()
    with db.writing() as cur:
        # First: on PostgreSQL it waits for a materializer holding some of these rows, whose
        # Observations the statements below then see and erase.
        cur.execute(sql("DELETE FROM device_reading WHERE patient = ?"), (owner,))
        readings = int(cur.rowcount)
        cur.execute(sql("SELECT kid FROM data_key WHERE owner = ? AND shredded IS NULL"),
                    (owner,))
        kids = [int(row[0]) for row in cur.fetchall()]
        if not kids:
            raise NotFound(f"{owner} has no data key to shred (never stored with encryption "
                           "on, or already shredded)")
        cur.execute(sql("UPDATE data_key SET wrapped = NULL, kek = NULL, shredded = ?, "
                        "retired = COALESCE(retired, ?) WHERE owner = ? AND shredded IS NULL"),
                    (now, now, owner))
        marks = _marks(len(kids))
        cur.execute(sql(f"SELECT COUNT(*) FROM resource_version WHERE kid IN ({marks})"), kids)
        versions = int(cur.fetchone()[0])
        cur.execute(sql("SELECT r.rid FROM resource r JOIN resource_version v "
                        "ON v.rid = r.rid AND v.version = r.version "
                        f"WHERE v.kid IN ({marks})"), kids)
        rids = [int(row[0]) for row in cur.fetchall()]
        for start in range(0, len(rids), _CHUNK):
            chunk = rids[start:start + _CHUNK]
            cur.execute(sql(f"UPDATE resource SET deleted = ? WHERE rid IN "
                            f"({_marks(len(chunk))})"), [True, *chunk])
            for table in INDEX_TABLES:
                cur.execute(sql(f"DELETE FROM {table} WHERE rid IN ({_marks(len(chunk))})"),
                            chunk)
    keyring.forget(kids)
    return ShredReport(owner, len(kids), versions, len(rids), readings)


@dataclass(frozen=True)
class RotateReport:
    kek: str
    rewrapped: int
    retired: list[str]


def rotate(keyring: Keyring, batch: int = _CHUNK) -> RotateReport:
    """New KEK version, every live data key rewrapped under it, unused versions retired."""
    db, sql, kek = keyring.db, keyring.db.sql, keyring.kek
    current = kek.rotate()
    rewrapped, after = 0, 0
    while True:
        with db.writing() as cur:
            cur.execute(sql("SELECT kid, owner, kek, wrapped FROM data_key WHERE kid > ? AND "
                            "wrapped IS NOT NULL ORDER BY kid LIMIT ?"), (after, batch))
            rows = cur.fetchall()
            for kid, owner, old, wrapped in rows:
                if old == current:
                    continue
                new, again = kek.rewrap(old, bytes(wrapped), key_context(int(kid), owner))
                cur.execute(sql("UPDATE data_key SET kek = ?, wrapped = ? WHERE kid = ? AND "
                                "kek = ?"), (new, again, kid, old))
                rewrapped += 1
        if not rows:
            break
        after = int(rows[-1][0])
    with db.reading() as cur:
        cur.execute("SELECT DISTINCT kek FROM data_key WHERE wrapped IS NOT NULL")
        keep = {row[0] for row in cur.fetchall()}
    return RotateReport(current, rewrapped, kek.retire(keep | {current}))


@dataclass(frozen=True)
class ReencryptReport:
    retired_keys: int
    resealed: int
    sealed_plaintext: int
    destroyed_keys: int


def _retire(keyring: Keyring, owner: str | None) -> None:
    db, sql = keyring.db, keyring.db.sql
    with db.writing() as cur:
        if owner is None:
            cur.execute(sql("UPDATE data_key SET retired = ? WHERE retired IS NULL AND "
                            "owner <> ?"), (now_micros(), BLIND_OWNER))
        else:
            cur.execute(sql("UPDATE data_key SET retired = ? WHERE retired IS NULL AND "
                            "owner = ?"), (now_micros(), owner))


def _reseal_batch(keyring: Keyring, owner_of: Any, where: str, params: list[Any],
                  batch: int) -> int:
    """Re-seal up to ``batch`` versions matching ``where`` under their owners' active keys;
    return how many."""
    db, sql = keyring.db, keyring.db.sql
    with db.writing() as cur:
        cur.execute(sql("SELECT v.seq, r.res_type, r.res_id, v.version, v.body, k.owner "
                        "FROM resource_version v JOIN resource r ON r.rid = v.rid "
                        f"LEFT JOIN data_key k ON k.kid = v.kid WHERE {where} "
                        "ORDER BY v.seq LIMIT ?"), [*params, batch])
        rows = cur.fetchall()
        plain: list[tuple[int, str, str, int, bytes, str]] = []
        for seq, rtype, rid, version, body, owner in rows:
            body = bytes(body)
            aad = body_aad(rtype, rid, version)
            if is_sealed(body):
                body = open_sealed(keyring.aead(sealed_kid(body)), body, aad)
            plain.append((seq, rtype, rid, version, body, owner or owner_of(body)))
        keys = keyring.keys_for(cur, {row[5] for row in plain})
        for seq, rtype, rid, version, body, owner in plain:
            kid, aead = keys[owner]
            cur.execute(sql("UPDATE resource_version SET body = ?, kid = ? WHERE seq = ?"),
                        (seal(aead, kid, body, body_aad(rtype, rid, version)), kid, seq))
    return len(rows)


def reencrypt(keyring: Keyring, owner_of: Any, patient: str | None = None, *,
              destroy_old: bool = False, batch: int = _CHUNK) -> ReencryptReport:
    """New data keys for ``patient`` (or every owner but the blind index) and every body
    re-sealed under them; ``owner_of(body)`` names the owner of a plaintext body."""
    owner = patient_owner(patient) if patient is not None else None
    db, sql = keyring.db, keyring.db.sql
    with db.reading() as cur:
        cur.execute(sql("SELECT COUNT(*) FROM data_key WHERE retired IS NULL AND owner <> ?"
                        + (" AND owner = ?" if owner else "")),
                    [BLIND_OWNER, *([owner] if owner else [])])
        retiring = int(cur.fetchone()[0])
    _retire(keyring, owner)
    scope = "k.retired IS NOT NULL AND k.shredded IS NULL AND k.owner <> ?"
    params: list[Any] = [BLIND_OWNER]
    if owner is not None:
        scope += " AND k.owner = ?"
        params.append(owner)
    resealed = sealed_plain = 0
    while count := _reseal_batch(keyring, owner_of, scope, params, batch):
        resealed += count
    if owner is None:
        while count := _reseal_batch(keyring, owner_of, "v.kid IS NULL AND v.body <> ?",
                                     [b""], batch):
            sealed_plain += count
    destroyed = 0
    if destroy_old:
        with db.writing() as cur:
            cur.execute(sql("DELETE FROM data_key WHERE retired IS NOT NULL AND shredded IS NULL"
                            " AND owner <> ?" + (" AND owner = ?" if owner else "") +
                            " AND NOT EXISTS (SELECT 1 FROM resource_version v "
                            "WHERE v.kid = data_key.kid) RETURNING kid"), params)
            gone = [int(row[0]) for row in cur.fetchall()]
        keyring.forget(gone)
        destroyed = len(gone)
    return ReencryptReport(retiring, resealed, sealed_plain, destroyed)


__all__ = ["KeyStatus", "ReencryptReport", "RotateReport", "ShredReport",
           "patient_owner", "reencrypt", "rotate", "shred", "status"]
