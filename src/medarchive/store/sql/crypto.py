"""The SQL store's side of encryption at rest: the ``data_key`` table and the open keys.

``data_key`` (migration 0005) holds one row per data key: a random 62-bit ``kid`` (also in the
header of every body it seals, and in ``resource_version.kid``), its ``owner`` (``Patient/<id>``,
``system`` or ``blind-index``), the KEK version that wrapped it and the wrapped key. At most one
key per owner is active (``retired`` is NULL); ``keys reencrypt`` retires one and makes a new
one, ``keys shred`` deletes the wrapped key for good (``wrapped`` NULL, ``shredded`` set).

``Keyring`` finds or creates the owners' keys inside the write transaction that seals with them
(PostgreSQL: ``FOR SHARE``, so a shred waits for the writes already using the key) and keeps
unwrapped keys in memory by ``kid``. Kids are random rather than sequential so that a key made in
a transaction that rolled back can never be confused with a later one. Work that needs no lock
is done before the transaction (``draft``): a Patient's new key is made there, and bodies are
sealed with the key each owner is expected to have; the transaction then wraps and stores the
new key, or reads the owner's active one, and seals again the rare body whose owner turned out
to have another key. Wrapping stays inside: a key wrapped before the transaction could be
wrapped under a KEK version that ``keys rotate`` retires before the row is committed (on
SQLite, a rotation's rewrap batches wait for the write transactions already holding the lock).

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
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Draft:
    """An owner's data key as chosen before the write transaction, so that bodies can be
    sealed before it starts; ``Keyring.keys_for`` says inside it which key the owner has."""

    kid: int
    aead: AESGCM
    raw: bytes | None = None
    """A key made for this write, to be wrapped and stored; None: the owner's active key when
    this process last read or made it."""


class Keyring:
    """The data keys of one database, opened through the KEK manager."""

    def __init__(self, db: Database, encryption: Encryption) -> None:
        self.db = db
        self.encryption = encryption
        self.kek = encryption.kek
        self._aeads: dict[int, AESGCM] = {}
        self._owners: dict[str, int] = {}  # owner -> kid last seen active here: a guess only
        self._lock = threading.Lock()
        self._share = " FOR SHARE" if db.dialect == "postgresql" else ""
        self.blind = BlindIndex(self._blind_key(), encryption.max_prefix)

    def _blind_key(self) -> bytes:
        """The blind-index key itself (an HMAC key, not an AEAD), made at the first start."""
        with self.db.writing() as cur:
            rows = self._rows(cur, [BLIND_OWNER])
            if not rows:
                raw = new_key()
                if self._insert(cur, BLIND_OWNER, self._draft(raw)):
                    return raw
                rows = self._rows(cur, [BLIND_OWNER])  # another process made it first
            owner, kid, kek, wrapped = rows[0]
            return self.kek.unwrap(kek, bytes(wrapped), key_context(int(kid), owner))

    def _rows(self, cur: Any, owners: Iterable[str]) -> list[tuple[str, Any, str, Any]]:
        """(owner, kid, kek, wrapped) of the owners' active keys that exist."""
        owners = sorted(set(owners))
        rows: list[tuple[str, Any, str, Any]] = []
        for start in range(0, len(owners), 500):
            chunk = owners[start:start + 500]
            cur.execute(self.db.sql(
                f"SELECT owner, kid, kek, wrapped FROM data_key WHERE owner IN "
                f"({', '.join('?' * len(chunk))}) AND retired IS NULL{self._share}"), chunk)
            rows += cur.fetchall()
        return rows

    def _draft(self, raw: bytes | None = None) -> Draft:
        """A new data key, not stored yet."""
        raw = raw or new_key()
        return Draft(secrets.randbits(62) + 1, AESGCM(raw), raw)

    def _insert(self, cur: Any, owner: str, draft: Draft) -> bool:
        """Wrap ``draft`` under the current KEK and store it as ``owner``'s active key; False
        when the owner has one already (made by a concurrent writer, or before this write was
        drafted)."""
        assert draft.raw is not None
        kek, wrapped = self.kek.wrap(draft.raw, key_context(draft.kid, owner))
        cur.execute(self.db.sql(
            "INSERT INTO data_key (kid, owner, kek, wrapped, created) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (owner) WHERE retired IS NULL DO NOTHING RETURNING kid"),
            (draft.kid, owner, kek, wrapped, now_micros()))
        return cur.fetchone() is not None

    def draft(self, owners: Iterable[str], fresh: Collection[str]) -> dict[str, Draft]:
        """Before a write transaction, the keys to seal with early: a new one for each owner
        in ``fresh`` (owners whose own record the write creates: they have no key yet, as a
        rule), the key this process last saw active for the others it remembers. Nothing is
        stored or trusted here: ``keys_for`` settles each owner's key inside the
        transaction."""
        drafts: dict[str, Draft] = {}
        for owner in owners:
            if owner in fresh:
                drafts[owner] = self._draft()
                continue
            kid = self._owners.get(owner)
            aead = self._aeads.get(kid) if kid is not None else None
            if kid is not None and aead is not None:
                drafts[owner] = Draft(kid, aead)
        return drafts

    def keys_for(self, cur: Any, owners: Iterable[str],
                 drafts: Mapping[str, Draft] | None = None) -> dict[str, tuple[int, AESGCM]]:
        """Each owner's active key as ``cur``'s write transaction reads it, created when the
        owner has none yet: first from the new keys of ``drafts``. A remembered key is used
        only when the transaction reads that it is still the owner's active one; it is not
        unwrapped again."""
        wanted = set(owners)
        found: dict[str, tuple[int, AESGCM]] = {}
        for owner, draft in (drafts or {}).items():
            if draft.raw is not None and owner in wanted and self._insert(cur, owner, draft):
                found[owner] = (draft.kid, self._keep(owner, draft.kid, draft.aead))
        for owner, kid, kek, wrapped in self._rows(cur, wanted - found.keys()):
            found[owner] = self._opened(owner, int(kid), kek, wrapped)
        for owner in sorted(wanted - found.keys()):
            draft = self._draft()
            if self._insert(cur, owner, draft):
                found[owner] = (draft.kid, self._keep(owner, draft.kid, draft.aead))
            else:  # a concurrent writer made this owner's key first
                _, kid, kek, wrapped = self._rows(cur, [owner])[0]
                found[owner] = self._opened(owner, int(kid), kek, wrapped)
        return found

    def _opened(self, owner: str, kid: int, kek: str, wrapped: Any) -> tuple[int, AESGCM]:
        """Active key ``kid`` of ``owner`` as its row reads: unwrapped unless remembered."""
        aead = self._aeads.get(kid)
        if aead is None:
            aead = AESGCM(self.kek.unwrap(kek, bytes(wrapped), key_context(kid, owner)))
        return kid, self._keep(owner, kid, aead)

    def _keep(self, owner: str | None, kid: int, aead: AESGCM) -> AESGCM:
        """Remember open key ``kid`` (and that it is ``owner``'s active key)."""
        with self._lock:
            known = self._aeads.get(kid)
            if known is None:
                if len(self._aeads) >= _CACHE_LIMIT:
                    self._aeads.clear()
                known = self._aeads[kid] = aead
            if owner is not None and self._owners.get(owner) != kid:
                if len(self._owners) >= _CACHE_LIMIT:
                    self._owners.clear()
                self._owners[owner] = kid
            return known

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
        return self._keep(None, kid, AESGCM(self.kek.unwrap(kek, bytes(wrapped),
                                                            key_context(kid, owner))))

    def forget(self, kids: Iterable[int]) -> None:
        """Drop keys from memory (after a shred or re-encryption in this process)."""
        with self._lock:
            for kid in kids:
                self._aeads.pop(kid, None)


def _missing(kid: int) -> str:
    return (f"data key {kid} is not in the database: restore the data keys "
            "(docs/encryption.md) before reading this record")
