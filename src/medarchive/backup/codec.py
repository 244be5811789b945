"""Rows of any table as portable bytes: the one encoding of backup data files.

A chunk is a list of rows, each a list of plain values (None, int, float, str, bytes), written
as JSON (orjson) with bytes as ``{"b": base64}`` and compressed with zstd (RFC 8878). Booleans
become 0/1, so the same row read from SQLite or PostgreSQL encodes identically; that is what
makes a backup restorable on the other backend and its content hashes comparable after a
restore. Resource bodies are opaque bytes here: whatever
the store keeps (plaintext JSON or ciphertext) is what the backup keeps.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import zstandard

from medarchive.backup.errors import BackupError

Row = list[Any]
_MOD = 1 << 256
_LEVEL = 1  # zstd's fastest: bodies may be ciphertext, which no level shrinks


def normalize(value: Any) -> Any:
    """One value as the portable form both backends agree on."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    return value


def _default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"b": base64.b64encode(value).decode("ascii")}
    raise TypeError(f"cannot back up a value of type {type(value).__name__}")


def portable(rows: Sequence[Sequence[Any]], positions: Sequence[int] | None = None
             ) -> list[Any]:
    """Rows ready for JSON: booleans as 0/1 and bytes as ``{"b": base64}`` at ``positions``
    (the boolean and binary columns; None: look at every value). Other rows pass unchanged."""
    if positions is not None and not positions:
        return list(rows)
    encode = binascii.b2a_base64
    out = []
    for row in rows:
        values = list(row)
        for i in range(len(values)) if positions is None else positions:
            value = values[i]
            kind = type(value)
            if kind is bytes:
                values[i] = {"b": encode(value, newline=False).decode("ascii")}
            elif kind is bool:
                values[i] = int(value)
            elif kind is memoryview or kind is bytearray:
                values[i] = {"b": encode(bytes(value), newline=False).decode("ascii")}
        out.append(values)
    return out


def encode_rows(rows: Sequence[Sequence[Any]], positions: Sequence[int] | None = None
                ) -> bytes:
    """Rows as one compressed chunk (see ``portable`` for ``positions``)."""
    data = orjson.dumps(portable(rows, positions), default=_default)
    return zstandard.ZstdCompressor(level=_LEVEL).compress(data)


def _restore(value: Any) -> Any:
    if type(value) is dict:
        return base64.b64decode(value["b"])
    return value


def decode_rows(blob: bytes, context: str) -> list[Row]:
    """The rows ``encode_rows`` wrote; a damaged chunk raises BackupError."""
    try:
        data = zstandard.ZstdDecompressor().decompress(blob)
        rows = orjson.loads(data)
        return [[_restore(v) for v in row] for row in rows]
    except (zstandard.ZstdError, orjson.JSONDecodeError, KeyError, TypeError,
            ValueError) as exc:
        raise BackupError(f"{context}: data is damaged ({exc})") from None


def table_digest(rows: Iterable[Sequence[Any]], start: int = 0) -> int:
    """An order-independent digest of a set of rows: the sum of the SHA-256 values of their
    portable JSON, modulo 2**256. ``backup verify`` computes it over the rows of a backup chain
    and over the database restored from it; both must agree."""
    total = start
    for row in rows:
        data = orjson.dumps(portable([row])[0], default=_default)
        total += int.from_bytes(hashlib.sha256(data).digest(), "big")
    return total % _MOD
