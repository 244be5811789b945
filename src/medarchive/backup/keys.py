"""The backup key: one AES-256-GCM key that encrypts backup files and one Ed25519 key that signs
their manifests, kept together in a file of its own (never in the database, owner-only mode).

The file is created on first use (``backup_key_file``). It is deliberately separate from the
encryption-at-rest key manager for now; the lead will unify them, so this module is the one place
that knows the format. Losing it makes every backup unreadable: keep an escrow copy
(``medarchive backup key-escrow``), as the runbook says.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from medarchive.backup.errors import BackupError

NONCE = 12
FORMAT = "medarchive-backup-key/1"


@dataclass(frozen=True)
class BackupKey:
    """The secrets in one backup key file; ``key_id`` names them in every manifest."""

    aes: bytes
    seed: bytes

    @property
    def key_id(self) -> str:
        public = self._signer().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return hashlib.sha256(public).hexdigest()[:16]

    def _signer(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    def encrypt(self, data: bytes, context: bytes) -> bytes:
        """AES-256-GCM (NIST SP 800-38D) with a random 96-bit nonce; ``context`` is bound as
        associated data so a file cannot be swapped for another one of the same backup."""
        nonce = os.urandom(NONCE)
        return nonce + AESGCM(self.aes).encrypt(nonce, data, context)

    def decrypt(self, blob: bytes, context: bytes) -> bytes:
        try:
            return AESGCM(self.aes).decrypt(blob[:NONCE], blob[NONCE:], context)
        except (InvalidTag, ValueError):
            raise BackupError(f"{context.decode()}: cannot be decrypted with backup key "
                              f"{self.key_id} (wrong key, or the file was altered)") from None

    def sign(self, data: bytes) -> bytes:
        """Ed25519 (RFC 8032) signature of a manifest."""
        return self._signer().sign(data)

    def verify(self, data: bytes, signature: bytes) -> bool:
        try:
            self._signer().public_key().verify(signature, data)
        except InvalidSignature:
            return False
        return True

    def to_bytes(self) -> bytes:
        return orjson.dumps({"format": FORMAT, "aes": base64.b64encode(self.aes).decode(),
                             "ed25519": base64.b64encode(self.seed).decode()})


def generate_key() -> BackupKey:
    return BackupKey(os.urandom(32), os.urandom(32))


def _parse(path: Path, data: bytes) -> BackupKey:
    try:
        doc = orjson.loads(data)
        if doc.get("format") != FORMAT:
            raise ValueError("unknown format")
        key = BackupKey(base64.b64decode(doc["aes"]), base64.b64decode(doc["ed25519"]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise BackupError(f"backup key file {path} is not valid: {exc}") from None
    if len(key.aes) != 32 or len(key.seed) != 32:
        raise BackupError(f"backup key file {path} is not valid: wrong key length")
    return key


def write_key(path: Path, key: BackupKey) -> None:
    """Write ``key`` to a new owner-only (0600) file; refuses to overwrite one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key.to_bytes())
        handle.flush()
        os.fsync(handle.fileno())


def load_key(path: Path, *, create: bool = False) -> BackupKey:
    """The key in ``path``; with ``create`` a new key is written there when none exists."""
    if not path.exists():
        if not create:
            raise BackupError(f"backup key file {path} not found: restore it from its escrow "
                              "copy (docs/operations.md), or set backup_key_file")
        key = generate_key()
        try:
            write_key(path, key)
        except FileExistsError:
            pass  # another process created it first: use theirs
        else:
            return key
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise BackupError(f"backup key file {path} is readable by other users: chmod 600 it")
    return _parse(path, path.read_bytes())


def escrow_key(source: Path, target: Path) -> BackupKey:
    """Copy the key file to ``target`` (owner-only) for safekeeping away from the data."""
    key = load_key(source)
    write_key(target, key)
    return key
