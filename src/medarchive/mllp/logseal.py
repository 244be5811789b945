"""Encryption at rest of the HL7 message log: a row's patient data sealed with the Keyring.

A logged message is a patient's record as the sending system wrote it (names, record numbers,
diagnoses, results), so with encryption at rest on (docs/encryption.md) a row's message text,
dead-letter bytes, error text (parse errors quote the field they refuse), unmapped field values
and note are sealed together into one ``sealed`` BLOB/BYTEA column with AES-256-GCM, in the
envelope resource bodies use (``crypto.envelope``: ``MAE1`` | data key id | nonce | ciphertext
| tag), the row's ``received`` time and ``msg_key`` as associated data. The columns lookups
need (id, received, msg_key, outcome, status, resources, duplicate, attempts) stay plain; the
sealed ones then hold empty values.

Which data key: an accepted message whose log row names exactly one Patient among the
resources it wrote is sealed under that patient's key, so ``medarchive keys shred`` of the
patient also makes those messages unreadable (they read as erased). Every other row — every
dead letter (refused before the archive established whose record it is), and a message naming
no patient or several — is sealed under the store's ``system`` key, which a shred does not
reach (docs/encryption.md, "HL7 message log").

Rows written while encryption was off stay readable as plaintext; each open of the log with
encryption on seals the plaintext rows written since the last open (ids above the mark kept in
``reindex_job``, which a restore empties, so a restored database is looked at again whole).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from medarchive.crypto.encryption import SYSTEM
from medarchive.crypto.envelope import Erased, KeyUnavailable, is_sealed, seal, sealed_kid
from medarchive.crypto.envelope import open_sealed as open_body
from medarchive.store.sql.crypto import Keyring

JOB = "hl7-log-sealed"
_LENGTH = struct.Struct(">I")
_BATCH = 500
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Secret:
    """The sealed part of a log row."""

    raw: str
    error: str
    unmapped: tuple[str, ...]
    data: bytes | None
    note: str


def owner(resources: Sequence[str]) -> str:
    """The data-key owner of a row: the one Patient its message wrote, else ``system``."""
    patients = {ref.split("/")[1] for ref in resources if ref.startswith("Patient/")}
    return f"Patient/{patients.pop()}" if len(patients) == 1 else SYSTEM


def aad(received: str, key: str) -> bytes:
    """Associated data: a sealed value moved to another row does not open."""
    return f"hl7_message_log/{received}/{key}".encode()


def pack(secret: Secret) -> bytes:
    """The plaintext to seal: a JSON header (length-prefixed), then the dead letter's bytes."""
    head = orjson.dumps({"raw": secret.raw, "error": secret.error,
                         "unmapped": list(secret.unmapped), "note": secret.note,
                         "data": secret.data is not None})
    return _LENGTH.pack(len(head)) + head + (secret.data or b"")


def unpack(plain: bytes) -> Secret:
    (size,) = _LENGTH.unpack_from(plain)
    head = orjson.loads(plain[_LENGTH.size:_LENGTH.size + size])
    data = plain[_LENGTH.size + size:] if head["data"] else None
    return Secret(head["raw"], head["error"], tuple(head["unmapped"]), data, head["note"])


def seal_row(keyring: Keyring, cur: Any, resources: Sequence[str], received: str, key: str,
             secret: Secret) -> bytes:
    """``secret`` sealed under its owner's active data key, read (or made) in ``cur``'s
    write transaction."""
    who = owner(resources)
    kid, aead = keyring.keys_for(cur, [who])[who]
    return seal(aead, kid, pack(secret), aad(received, key))


def open_row(keyring: Keyring | None, entry_id: int, received: str, key: str,
             sealed: bytes) -> Secret:
    """The sealed part of row ``entry_id``. Raises ``KeyUnavailable`` without a keyring or
    data key, or when the value does not authenticate; ``Erased`` when its key was
    shredded."""
    if keyring is None or not is_sealed(sealed):
        raise KeyUnavailable(
            f"HL7 message log entry {entry_id} is sealed (encryption at rest) and cannot be "
            "read without its key: run with encryption = on and the key manager that sealed it "
            "(docs/encryption.md)")
    return unpack(open_body(keyring.aead(sealed_kid(sealed)), sealed, aad(received, key)))


def erased(entry_id: int, exc: Erased) -> Secret:
    """What a row whose patient was shredded reads as: nothing of the message."""
    return Secret("", f"HL7 message log entry {entry_id}: {exc}", (), None, "")


def seal_plaintext(db: Any, keyring: Keyring) -> int:
    """Seal the rows written without encryption since the last open (ids above this job's
    mark), in transactions of 500 rows; returns how many were sealed."""
    with db.reading() as cur:
        cur.execute(db.sql("SELECT last_rid FROM reindex_job WHERE job = ?"), (JOB,))
        row = cur.fetchone()
    mark, total = int(row[0]) if row else 0, 0
    while True:
        with db.writing() as cur:
            cur.execute(db.sql(
                "SELECT id, received, msg_key, resources, raw, error, unmapped, data, note, "
                "sealed FROM hl7_message_log WHERE id > ? ORDER BY id LIMIT ?"), (mark, _BATCH))
            rows = cur.fetchall()
            plain = [r for r in rows if r[9] is None]
            for (entry_id, received, key, resources, raw, error, unmapped, data, note,
                 _) in plain:
                secret = Secret(raw, error, tuple(orjson.loads(unmapped)),
                                bytes(data) if data is not None else None, note)
                if secret.data is not None:
                    secret = Secret("", error, secret.unmapped, secret.data, note)
                sealed = seal_row(keyring, cur, orjson.loads(resources), received, key, secret)
                cur.execute(db.sql(
                    "UPDATE hl7_message_log SET raw = '', error = '', unmapped = '[]', "
                    "data = NULL, note = '', sealed = ? WHERE id = ?"), (sealed, entry_id))
            if rows:
                mark = int(rows[-1][0])
            cur.execute(db.sql(
                "INSERT INTO reindex_job (job, last_rid, done, total, finished, started, "
                "updated) VALUES (?, ?, 0, 0, ?, 0, 0) ON CONFLICT (job) DO UPDATE SET "
                "last_rid = excluded.last_rid"), (JOB, mark, True))
        total += len(plain)
        if len(rows) < _BATCH:
            break
    if total:
        log.warning("sealed %d HL7 message log rows written without encryption at rest", total)
    return total
