"""Rows of any table as portable bytes: the one encoding of backup data files.

A chunk is a list of rows, each a list of plain values (None, int, float, str, bytes),
compressed with zstd (RFC 8878). Booleans become 0/1, so the same row read from SQLite or
PostgreSQL encodes identically; that is what makes a backup restorable on the other backend and
its content hashes comparable after a restore. Resource bodies are opaque bytes here: whatever
the store keeps (plaintext JSON or ciphertext) is what the backup keeps.

Layout 2 (written now), column by column so that no per-value work is done in Python for the
bulk of the data::

    b"MAB2" | header length (4 bytes, big-endian) | header (JSON) | blobs

The header holds the row count, every non-binary column as a JSON array, and for each binary
column the length of each value (-1 for NULL); the values themselves follow, concatenated, after
the header (no base64, no JSON escaping). Rows of unequal length (only the tests write them)
are kept as JSON rows in the header. Layout 1 (older backups, still read): the rows as one JSON
array with bytes as ``{"b": base64}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Iterable, Sequence
from itertools import accumulate
from typing import Any

import orjson
import zstandard

from medarchive.backup.errors import BackupError

Row = Sequence[Any]
Columns = list[list[Any]]
MAGIC = b"MAB2"
_HEAD = struct.Struct(">4sI")
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


def portable(rows: Iterable[Row], positions: Sequence[int] | None = None) -> list[Any]:
    """Rows ready for JSON: booleans as 0/1 and bytes as ``{"b": base64}`` at ``positions``
    (the boolean and binary columns; None: look at every value)."""
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


def _is_binary(column: Sequence[Any]) -> bool:
    return any(v is not None for v in column) and all(
        v is None or type(v) in (bytes, memoryview, bytearray) for v in column)


def _plain_column(column: Sequence[Any]) -> Sequence[Any]:
    if any(type(v) is bool for v in column):
        return [int(v) if type(v) is bool else v for v in column]
    return column


def encode_columns(rows: Sequence[Row], binary: Sequence[int] | None = None,
                   flags: Sequence[int] = ()) -> bytes:
    """Rows as one uncompressed layout-2 chunk. ``binary``: the columns to store as raw
    bytes (None: every column whose values are all bytes); ``flags``: boolean columns."""
    width = len(rows[0]) if rows else 0
    if any(len(row) != width for row in rows):
        header = orjson.dumps({"n": len(rows), "rows": portable(rows)})
        return _HEAD.pack(MAGIC, len(header)) + header
    columns = list(zip(*rows, strict=True)) if rows else []
    picked = set(range(width) if binary is None else binary)
    lengths: dict[str, list[int]] = {}
    blobs: list[bytes] = []
    plain: list[Any] = []
    for i, column in enumerate(columns):
        if i in picked and (binary is not None or _is_binary(column)):
            try:
                blob = b"".join(v for v in column if v is not None)
            except TypeError:  # a value SQLite typed otherwise: stored as JSON below
                pass
            else:
                lengths[str(i)] = [-1 if v is None else len(v) for v in column]
                blobs.append(blob)
                plain.append(None)
                continue
        if i in flags:
            plain.append([None if v is None else int(v) for v in column])
        else:
            plain.append(_plain_column(column) if binary is None else column)
    tagged: list[int] = []
    parts = [_dump_column(i, column, tagged) for i, column in enumerate(plain)]
    header = b'{"n":%d,"lens":%b,"tagged":%b,"cols":[%b]}' % (
        len(rows), orjson.dumps(lengths), orjson.dumps(tagged), b",".join(parts))
    return b"".join([_HEAD.pack(MAGIC, len(header)), header, *blobs])


def _dump_column(i: int, column: Any, tagged: list[int]) -> bytes:
    """One column as JSON; bytes in it (a value SQLite typed otherwise) become
    ``{"b": base64}`` and the column is listed in ``tagged``."""
    def default(value: Any) -> Any:
        if not tagged or tagged[-1] != i:
            tagged.append(i)
        return _default(value)
    return orjson.dumps(column, default=default)


def compress(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=_LEVEL).compress(data)


def compress_bytes(data: bytes) -> bytes:
    """Opaque bytes (a piece of a search-index image) with zstd on every core."""
    return zstandard.ZstdCompressor(level=_LEVEL, threads=-1).compress(data)


def decompress(blob: bytes, context: str) -> bytes:
    """What ``compress_bytes`` wrote; damaged data raises BackupError."""
    try:
        return zstandard.ZstdDecompressor().decompress(blob)
    except zstandard.ZstdError as exc:
        raise BackupError(f"{context}: data is damaged ({exc})") from None


def encode_rows(rows: Sequence[Row], binary: Sequence[int] | None = None,
                flags: Sequence[int] = ()) -> bytes:
    """Rows as one compressed chunk (see ``encode_columns``)."""
    return compress(encode_columns(rows, binary, flags))


def _restore(value: Any) -> Any:
    if type(value) is dict:
        return base64.b64decode(value["b"])
    return value


def _decode(blob: bytes) -> tuple[int, Columns | None, list[list[Any]] | None]:
    """(row count, columns, None) of a chunk, or (row count, None, rows) for rows of unequal
    length and layout 1."""
    data = zstandard.ZstdDecompressor().decompress(blob)
    if not data.startswith(MAGIC):
        rows = [[_restore(v) for v in row] for row in orjson.loads(data)]
        return len(rows), None, rows
    _, size = _HEAD.unpack_from(data)
    start = _HEAD.size + size
    header = orjson.loads(data[_HEAD.size:start])
    count = int(header["n"])
    if "rows" in header:
        rows = [[_restore(v) for v in row] for row in header["rows"]]
        if len(rows) != count:
            raise ValueError("row count")
        return count, None, rows
    columns: Columns = []
    lens, tagged = header["lens"], set(header["tagged"])
    for i, column in enumerate(header["cols"]):
        if column is not None:
            if len(column) != count:
                raise ValueError("column length")
            columns.append([_restore(v) for v in column] if i in tagged else column)
            continue
        sizes = lens[str(i)]
        ends = list(accumulate(max(n, 0) for n in sizes))
        total = ends[-1] if ends else 0
        if len(sizes) != count or start + total > len(data):
            raise ValueError("binary column length")
        columns.append([None if n < 0 else data[start + end - n:start + end]
                        for n, end in zip(sizes, ends, strict=True)])
        start += total
    if start != len(data):
        raise ValueError("trailing bytes")
    return count, columns, None


def _checked(blob: bytes, context: str) -> tuple[int, Columns | None, list[list[Any]] | None]:
    try:
        return _decode(blob)
    except (zstandard.ZstdError, orjson.JSONDecodeError, KeyError, TypeError, ValueError,
            struct.error, binascii.Error) as exc:
        raise BackupError(f"{context}: data is damaged ({exc})") from None


def decode_columns(blob: bytes, context: str) -> tuple[int, Columns]:
    """(row count, columns) of a chunk of a table (rows of equal length); a damaged chunk
    raises BackupError."""
    count, columns, rows = _checked(blob, context)
    if columns is not None:
        return count, columns
    assert rows is not None
    width = len(rows[0]) if rows else 0
    if any(len(row) != width for row in rows):
        raise BackupError(f"{context}: data is damaged (rows of unequal length)")
    return count, [list(column) for column in zip(*rows, strict=True)] if rows else []


def decode_rows(blob: bytes, context: str) -> list[list[Any]]:
    """The rows ``encode_rows`` wrote; a damaged chunk raises BackupError."""
    count, columns, rows = _checked(blob, context)
    if rows is not None:
        return rows
    assert columns is not None
    if not columns:
        return [[] for _ in range(count)]
    return [list(row) for row in zip(*columns, strict=True)]


def table_digest(rows: Iterable[Row], start: int = 0) -> int:
    """An order-independent digest of a set of rows: the sum of the SHA-256 values of their
    portable JSON, modulo 2**256. ``backup verify`` computes it over the rows of a backup chain
    and over the database restored from it; both must agree."""
    total = start
    for row in rows:
        data = orjson.dumps(portable([row])[0], default=_default)
        total += int.from_bytes(hashlib.sha256(data).digest(), "big")
    return total % _MOD
