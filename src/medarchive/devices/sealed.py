"""Raw device readings encrypted at rest (migration 0016; docs/encryption.md, docs/ingestion.md).

With encryption on, the landing seals what a reading says — its key, device, values, time and
Device reference — into one payload under its patient's data key, with the envelope of resource
bodies (``crypto.envelope``: AES-256-GCM, the data key's id in the header), and stores its
``reading_key`` as a blind index (HMAC under the database's blind-index key), which keeps
redeliveries unique without showing the key. Left readable are what the queries need and the
store shows as well: the kind, the effective and reception instants (as integers), and the
patient reference (the data key's owner, as in ``data_key``). A patient whose key was shredded
(``medarchive keys shred``) has unreadable readings: ``open`` raises ``Erased``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from medarchive.crypto.envelope import open_sealed, seal, sealed_kid
from medarchive.devices.raw import Row

Opened = tuple[str, str, tuple[float, ...], str, str]
"""(key, device, values, effective, Device reference) of a sealed row."""


def _aad(stored_key: str) -> bytes:
    """Binds a payload to its row: moved to another row, it fails to open."""
    return f"device_reading/{stored_key}".encode()


class RowSealer:
    """Seals and opens landed rows with the store's ``Keyring`` (``store.sql.crypto``)."""

    def __init__(self, keyring: Any) -> None:
        self.keyring = keyring

    def stored_key(self, key: str) -> str:
        """The blind index of a reading key (deterministic: duplicates still collide)."""
        return str(self.keyring.blind.digest("k", "device_reading", key))

    def plaintexts(self, rows: Sequence[Row]) -> list[tuple[str, bytes]]:
        """(stored key, plaintext to seal) of each row: what needs no data key, so the
        landing makes it before its write transaction."""
        return [(self.stored_key(row.key),
                 orjson.dumps([row.key, row.device, row.values, row.effective, row.device_ref]))
                for row in rows]

    def seal(self, cur: Any, rows: Sequence[Row],
             plaintexts: Sequence[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
        """(stored key, sealed payload) of each row, from its ``plaintexts`` entry; the
        patients' data keys are found or made inside ``cur``'s write transaction, once per
        patient of the batch."""
        keys = self.keyring.keys_for(cur, {row.patient for row in rows})
        sealed = []
        for row, (stored, plain) in zip(rows, plaintexts, strict=True):
            kid, aead = keys[row.patient]
            sealed.append((stored, seal(aead, kid, plain, _aad(stored))))
        return sealed

    def open(self, stored_key: str, payload: bytes) -> Opened:
        """What ``seal`` sealed; ``Erased`` when the patient's data key was shredded."""
        payload = bytes(payload)
        aead = self.keyring.aead(sealed_kid(payload))
        key, device, values, effective, device_ref = orjson.loads(
            open_sealed(aead, payload, _aad(stored_key)))
        return key, device, tuple(float(v) for v in values), effective, device_ref
