"""The SQL store's side of encryption at rest: the ``data_key`` table and the open keys.

``data_key`` (migration 0005) holds one row per data key: a random 62-bit ``kid`` (also in the
header of every body it seals, and in ``resource_version.kid``), its ``owner`` (``Patient/<id>``,
``system`` or ``blind-index``), the KEK version that wrapped it and the wrapped key. At most one
key per owner is active (``retired`` is NULL); ``keys reencrypt`` retires one and makes a new
one, ``keys shred`` deletes the wrapped key for good (``wrapped`` NULL, ``shredded`` set).

``Keyring`` finds or creates the owners' keys inside the write transaction that seals with them
(PostgreSQL: ``FOR SHARE``, so a shred waits for the writes already using the key) and keeps
unwrapped keys in memory by ``kid``. Kids are random rather than sequential so that a key made in
a transaction that rolled back can never be confused with a later one.

Memory alone never decides that a key may still be used. The statement that reads a version
also reads its key's row (``store.sql.query.KEY_COLUMNS``): a shredded key reads as erased, and
``unseal`` opens the body with the key that row names, never with the one the body's header
names, so no process keeps serving a record from a remembered key that another process has
shredded or deleted since.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterable
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from medarchive.crypto.blind import BlindIndex
from medarchive.crypto.encryption import BLIND_OWNER, Encryption
from medarchive.crypto.envelope import Erased, KeyUnavailable, new_key, open_sealed, sealed_kid
from medarchive.store.sql.database import Database

_CACHE_LIMIT = 100_000


def now_micros() -> int:
    return int(time.time() * 1_000_000)


def key_context(kid: int, owner: str) -> bytes:
    """Associated data of a wrapped key: a wrapped key moved to another row does not unwrap."""
    return f"medarchive-dek/{kid}/{owner}".encode()


def erased_message(what: str, shredded: int | None) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime((shredded or 0) / 1e6))
    return (f"{what} was erased: its patient's data key was shredded on {when} "
            "(medarchive keys shred); the record can no longer be read")


class Keyring:
    """The data keys of one database, opened through the KEK manager."""

    def __init__(self, db: Database, encryption: Encryption) -> None:
        self.db = db
        self.encryption = encryption
        self.kek = encryption.kek
        self._aeads: dict[int, AESGCM] = {}
        self._lock = threading.Lock()
        self._share = " FOR SHARE" if db.dialect == "postgresql" else ""
        self.blind = BlindIndex(self._blind_key(), encryption.max_prefix)

    def _blind_key(self) -> bytes:
        with self.db.writing() as cur:
            _kid, raw = self._active(cur, [BLIND_OWNER]).get(BLIND_OWNER) or \
                self._create(cur, BLIND_OWNER)
        return raw

    def _active(self, cur: Any, owners: Iterable[str]) -> dict[str, tuple[int, bytes]]:
        """(kid, raw key) of the owners' active keys that exist."""
        owners = sorted(set(owners))
        found: dict[str, tuple[int, bytes]] = {}
        for start in range(0, len(owners), 500):
            chunk = owners[start:start + 500]
            cur.execute(self.db.sql(
                f"SELECT owner, kid, kek, wrapped FROM data_key WHERE owner IN "
                f"({', '.join('?' * len(chunk))}) AND retired IS NULL{self._share}"), chunk)
            for owner, kid, kek, wrapped in cur.fetchall():
                found[owner] = (int(kid), self.kek.unwrap(kek, bytes(wrapped),
                                                          key_context(int(kid), owner)))
        return found

    def _create(self, cur: Any, owner: str) -> tuple[int, bytes]:
        raw = new_key()
        kid = secrets.randbits(62) + 1
        kek, wrapped = self.kek.wrap(raw, key_context(kid, owner))
        cur.execute(self.db.sql(
            "INSERT INTO data_key (kid, owner, kek, wrapped, created) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (owner) WHERE retired IS NULL DO NOTHING RETURNING kid"),
            (kid, owner, kek, wrapped, now_micros()))
        if cur.fetchone() is None:  # a concurrent writer made this owner's key first
            return self._active(cur, [owner])[owner]
        return kid, raw

    def keys_for(self, cur: Any, owners: Iterable[str]) -> dict[str, tuple[int, AESGCM]]:
        """Each owner's active key, created when it has none yet (inside ``cur``'s write)."""
        wanted = set(owners)
        found = self._active(cur, wanted)
        for owner in sorted(wanted - found.keys()):
            found[owner] = self._create(cur, owner)
        return {owner: (kid, self._remember(kid, raw)) for owner, (kid, raw) in found.items()}

    def _remember(self, kid: int, raw: bytes) -> AESGCM:
        with self._lock:
            aead = self._aeads.get(kid)
            if aead is None:
                if len(self._aeads) >= _CACHE_LIMIT:
                    self._aeads.clear()
                aead = self._aeads[kid] = AESGCM(raw)
            return aead

    def unseal(self, kid: int | None, body: bytes, aad: bytes) -> bytes:
        """The plaintext of sealed ``body`` under data key ``kid``: the key of the body's row
        as the statement that read the row joined it (``KEY_COLUMNS``; None when that key's
        row is missing), already checked not shredded by the caller. A body whose header names
        another key fails authentication."""
        aead = self._aeads.get(kid) if kid is not None else None
        if aead is None:
            if kid is None:
                raise KeyUnavailable(_missing(sealed_kid(body)))
            aead = self.aead(kid)
        return open_sealed(aead, body, aad)

    def aead(self, kid: int) -> AESGCM:
        """The open data key ``kid`` (cached); ``Erased`` when it was shredded."""
        aead = self._aeads.get(kid)
        if aead is not None:
            return aead
        with self.db.reading() as cur:
            cur.execute(self.db.sql("SELECT owner, kek, wrapped, shredded FROM data_key "
                                    "WHERE kid = ?"), (kid,))
            row = cur.fetchone()
        if row is None:
            raise KeyUnavailable(_missing(kid))
        owner, kek, wrapped, shredded = row
        if shredded is not None or wrapped is None:
            raise Erased(erased_message(owner, shredded))
        return self._remember(kid, self.kek.unwrap(kek, bytes(wrapped), key_context(kid, owner)))

    def forget(self, kids: Iterable[int]) -> None:
        """Drop keys from memory (after a shred or re-encryption in this process)."""
        with self._lock:
            for kid in kids:
                self._aeads.pop(kid, None)


def _missing(kid: int) -> str:
    return (f"data key {kid} is not in the database: restore the data keys "
            "(docs/encryption.md) before reading this record")
