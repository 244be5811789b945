"""The on-disk form of a backup folder, and the checks that make a damaged one fail loudly.

    DIR/<id>/manifest.json   what the backup holds: tables, files, sizes, SHA-256s, row
                             counts, high-water marks, the key id and the parent backup
    DIR/<id>/manifest.sig    Ed25519 signature of manifest.json by the backup key
    DIR/<id>/data/<table>.<n>  zstd-compressed rows, AES-256-GCM encrypted

``<id>`` is the snapshot time (UTC, microseconds) and the kind, so names sort by time. A backup is
written under ``DIR/.partial-<id>`` and renamed when complete, so a failed run leaves nothing that
looks like a backup. Every check here runs before a restore writes a single row.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from medarchive.backup.codec import Columns, decode_columns, decode_rows, decompress
from medarchive.backup.errors import BackupError
from medarchive.backup.indeximage import PIECES
from medarchive.backup.indexkey import IndexSeal
from medarchive.backup.keys import BackupKey

FORMAT = "medarchive-backup/1"
MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"


@dataclass(frozen=True)
class Backup:
    """One backup of a folder, its manifest already signature-checked."""

    root: Path
    manifest: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.manifest["id"])

    @property
    def path(self) -> Path:
        return self.root / self.id

    @property
    def parent(self) -> str | None:
        return self.manifest["parent"]

    @property
    def created(self) -> int:
        """Snapshot time, microseconds since the epoch."""
        return int(self.manifest["created_micros"])


def backup_ids(root: Path) -> list[str]:
    """Ids of the complete backups in ``root``, oldest first."""
    if not root.is_dir():
        return []
    return sorted(entry.name for entry in root.iterdir()
                  if entry.is_dir() and not entry.name.startswith(".")
                  and (entry / MANIFEST).exists())


def write_manifest(folder: Path, manifest: dict[str, Any], key: BackupKey) -> None:
    data = orjson.dumps(manifest, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
    _write(folder / MANIFEST, data)
    _write(folder / SIGNATURE, key.sign(data))


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def write_file(folder: Path, name: str, data: bytes) -> dict[str, Any]:
    """Write one data file; return its manifest entry (name, size, SHA-256)."""
    (folder / "data").mkdir(exist_ok=True)
    _write(folder / "data" / name, data)
    return {"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def open_backup(root: Path, backup_id: str, key: BackupKey) -> Backup:
    """The backup ``backup_id`` with its manifest signature checked against ``key``."""
    folder = root / backup_id
    try:
        data = (folder / MANIFEST).read_bytes()
        signature = (folder / SIGNATURE).read_bytes()
    except FileNotFoundError as exc:
        raise BackupError(f"backup {backup_id}: {Path(exc.filename).name} is missing") from None
    try:
        manifest = orjson.loads(data)
        key_id = manifest.get("key_id")
    except (orjson.JSONDecodeError, AttributeError):
        raise BackupError(f"backup {backup_id}: manifest is corrupted or truncated") from None
    if key_id != key.key_id:
        raise BackupError(f"backup {backup_id} was made with backup key {key_id}, but the key "
                          f"file holds key {key.key_id}: use the right key (or its escrow copy)")
    if not key.verify(data, signature):
        raise BackupError(f"backup {backup_id}: manifest signature is invalid "
                          "(the manifest was altered or damaged)")
    if manifest.get("format") != FORMAT or manifest.get("id") != backup_id:
        raise BackupError(f"backup {backup_id}: not a {FORMAT} manifest for this folder")
    return Backup(root, manifest)


def chain(root: Path, backup_id: str, key: BackupKey) -> list[Backup]:
    """The backups a restore to ``backup_id`` needs: its full backup, then each incremental."""
    found = [open_backup(root, backup_id, key)]
    while found[0].parent is not None:
        parent = found[0].parent
        if not (root / parent).is_dir():
            raise BackupError(f"backup {found[0].id} needs {parent}, which is missing: the "
                              "chain is broken")
        found.insert(0, open_backup(root, parent, key))
    return found


def files(backup: Backup) -> list[tuple[str, dict[str, Any]]]:
    """(table, file entry) for every data file, in the order they were written; the pieces
    of a search-index image (indeximage.py) come last, under the name ``PIECES``."""
    return [(table, entry) for table, doc in backup.manifest["tables"].items()
            for entry in doc["files"]] + [(PIECES, entry) for entry in image_files(backup)]


def image_files(backup: Backup) -> list[dict[str, Any]]:
    """The pieces of the backup's search-index image (none: no image)."""
    return list((backup.manifest.get("index") or {}).get("files", []))


def check_files(backup: Backup) -> int:
    """Check every data file's presence, size and SHA-256; return the bytes checked."""
    total = 0
    for _, entry in files(backup):
        path = backup.path / "data" / entry["name"]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BackupError(f"backup {backup.id}: data file {entry['name']} is missing") from None
        if len(data) < entry["bytes"]:
            raise BackupError(f"backup {backup.id}: data file {entry['name']} is truncated "
                              f"({len(data)} of {entry['bytes']} bytes)")
        if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise BackupError(f"backup {backup.id}: data file {entry['name']} is corrupted "
                              "(checksum mismatch)")
        total += len(data)
    return total


def _plain(backup: Backup, entry: dict[str, Any], key: BackupKey,
           seal: IndexSeal | None = None) -> tuple[bytes, str]:
    """One data file decrypted (checked again: it may change after check_files), and opened
    with ``seal`` too for a sealed copy of the search index."""
    data = (backup.path / "data" / entry["name"]).read_bytes()
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise BackupError(f"backup {backup.id}: data file {entry['name']} is corrupted "
                          "(checksum mismatch)")
    context = f"{backup.id}/{entry['name']}"
    plain = key.decrypt(data, context.encode())
    return (plain if seal is None else seal.open(plain, context.encode())), context


def _counted(count: int, entry: dict[str, Any], context: str) -> None:
    if count != entry["rows"]:
        raise BackupError(f"{context}: holds {count} rows, the manifest says {entry['rows']}")


def read_rows(backup: Backup, entry: dict[str, Any], key: BackupKey,
              seal: IndexSeal | None = None) -> list[list[Any]]:
    """The rows of one data file."""
    blob, context = _plain(backup, entry, key, seal)
    rows = decode_rows(blob, context)
    _counted(len(rows), entry, context)
    return rows


def read_columns(backup: Backup, entry: dict[str, Any], key: BackupKey,
                 seal: IndexSeal | None = None) -> tuple[int, Columns]:
    """(row count, columns) of one data file: what a restore loads without per-row work."""
    blob, context = _plain(backup, entry, key, seal)
    count, columns = decode_columns(blob, context)
    _counted(count, entry, context)
    return count, columns


def image_pieces(backup: Backup, key: BackupKey, seal: IndexSeal | None) -> Iterator[bytes]:
    """The backup's search-index image, piece by piece, each checked, decrypted, opened with
    ``seal`` and decompressed."""
    for entry in image_files(backup):
        blob, context = _plain(backup, entry, key, seal)
        yield decompress(blob, context)


def assemble_image(backup: Backup, key: BackupKey, seal: IndexSeal | None, path: Path) -> None:
    """Write the backup's search-index image to ``path`` (owner-only) in plaintext: only into
    a folder in memory (scratch.py)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        for piece in image_pieces(backup, key, seal):
            out.write(piece)


def remove(root: Path, backup_id: str) -> None:
    shutil.rmtree(root / backup_id)
