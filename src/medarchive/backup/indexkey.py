"""The key that seals the search index inside a full backup, wrapped by the encryption KEK.

The search index holds plaintext clinical values (codes, dates, quantities, reference ids) of
every patient. In the live database a shredded patient's index rows are deleted; a backup taken
before the shred still holds them. Sealed under the backup key alone they would outlive the
shred for anyone holding that key, so a full backup of an encrypted database seals its index
files a second time, under a fresh random key that the encryption key manager wraps (file KEK or
Vault transit). Shredding then reaches the index in backups exactly as it reaches the wrapped
data keys (docs/encryption.md): ``keys rotate`` after ``keys shred`` retires the KEK version,
and neither the old backups' data keys nor their index keys unwrap any more. A restore that
cannot unwrap the index key rebuilds the index from the bodies instead (when it can read them).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from medarchive.backup.errors import BackupError
from medarchive.errors import FhirError

NONCE = 12


def _context(backup_id: str) -> bytes:
    return f"medarchive-backup-index/{backup_id}".encode()


@dataclass(frozen=True)
class IndexSeal:
    """The open index key of one backup."""

    aead: AESGCM

    def seal(self, data: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE)
        return nonce + self.aead.encrypt(nonce, data, aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        try:
            return self.aead.decrypt(blob[:NONCE], blob[NONCE:], aad)
        except (InvalidTag, ValueError):
            raise BackupError(f"{aad.decode()}: the search index cannot be opened with its "
                              "key (the file was altered)") from None


def new_seal(kek: Any, backup_id: str) -> tuple[IndexSeal, dict[str, str]]:
    """A fresh index key and its manifest entry (KEK version, wrapped key)."""
    raw = AESGCM.generate_key(bit_length=256)
    version, wrapped = kek.wrap(raw, _context(backup_id))
    return IndexSeal(AESGCM(raw)), {"kek": version,
                                    "wrapped": base64.b64encode(wrapped).decode("ascii")}


def open_seal(kek: Any, backup_id: str, doc: dict[str, str]) -> IndexSeal:
    """The index key of backup ``backup_id``; BackupError when the KEK cannot unwrap it."""
    try:
        raw = kek.unwrap(doc["kek"], base64.b64decode(doc["wrapped"]), _context(backup_id))
    except (FhirError, InvalidTag, ValueError, KeyError) as exc:
        raise BackupError(f"backup {backup_id}: its search index key cannot be unwrapped by "
                          f"the encryption key manager ({exc})") from None
    return IndexSeal(AESGCM(raw))
