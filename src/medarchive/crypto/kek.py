"""Key-encryption keys (KEKs): what wraps the data keys kept in the database.

A ``KeyManager`` wraps and unwraps 256-bit data keys and can rotate to a new KEK version.
``LocalKeyFile`` is the default: a small JSON file outside the database, created with owner-only
permissions (0600) and refused when group or others can read it, holding every KEK version
still needed (``current`` wraps new keys). ``vault.VaultTransit`` is the production choice:
the KEK never leaves HashiCorp Vault's transit engine.

Wrapping is AES-256-GCM with the data key's id and owner as associated data, so a wrapped key
copied onto another row does not unwrap. A rotation adds a version and makes it current; once
the data keys are rewrapped (``store/sql/crypto.py``) the versions nothing uses any more are
dropped from the file, which also makes every older copy of the wrapped keys (an old dump)
unreadable.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import stat
import threading
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from medarchive.crypto.envelope import KeyUnavailable, new_key

FORMAT = "medarchive-kek/1"


class KeyManager(Protocol):
    """Custody of the key-encryption key; every method is thread-safe."""

    name: str

    def current(self) -> str:
        """The id of the KEK version that wraps new data keys."""
        ...

    def wrap(self, key: bytes, context: bytes) -> tuple[str, bytes]:
        """(KEK version id, wrapped key)."""
        ...

    def unwrap(self, kek: str, wrapped: bytes, context: bytes) -> bytes:
        ...

    def rewrap(self, kek: str, wrapped: bytes, context: bytes) -> tuple[str, bytes]:
        """The key wrapped again under the current version."""
        ...

    def rotate(self) -> str:
        """Make a new KEK version current; return its id."""
        ...

    def retire(self, keep: set[str]) -> list[str]:
        """Stop keeping the versions not in ``keep`` (and not current); return them."""
        ...

    def versions(self) -> list[str]:
        ...


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class LocalKeyFile:
    """KEK versions in a 0600 JSON file: ``{"format", "current", "keys": {id: base64}}``."""

    name = "file"

    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._keys: dict[str, AESGCM] = {}
        self._raw: dict[str, str] = {}
        self._current = ""
        if not self.path.exists():
            if not create:
                raise KeyUnavailable(f"key file {self.path} not found: restore it from its "
                                     "escrow copy (docs/encryption.md)")
            self._create()
        self._load()

    def _create(self) -> None:
        """Write a complete file beside the target, then link it into place: a process that
        starts at the same moment sees either no file or the whole one, never half of it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"format": FORMAT, "current": "local-1", "keys": {"local-1": _b64(new_key())}}
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(doc, handle)
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):  # another process won: use theirs
                os.link(tmp, self.path)
        finally:
            tmp.unlink(missing_ok=True)

    def _load(self) -> None:
        try:
            info = self.path.stat()
            if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise KeyUnavailable(f"key file {self.path} is readable by group or others "
                                     f"(mode {stat.S_IMODE(info.st_mode):o}): chmod 600 it")
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            raise KeyUnavailable(f"key file {self.path} not found: restore it from its escrow "
                                 "copy (docs/encryption.md)") from None
        except (ValueError, OSError) as exc:
            raise KeyUnavailable(f"key file {self.path} is unreadable: {exc}") from None
        if doc.get("format") != FORMAT or doc.get("current") not in doc.get("keys", {}):
            raise KeyUnavailable(f"key file {self.path} is not a MedArchive key file")
        self._raw = dict(doc["keys"])
        self._keys = {kid: AESGCM(base64.b64decode(raw)) for kid, raw in self._raw.items()}
        self._current = doc["current"]
        self._stamp = (info.st_mtime_ns, info.st_size)

    def _fresh(self) -> None:
        """Re-read the file when another process (``keys rotate``) has replaced it."""
        with contextlib.suppress(FileNotFoundError):
            info = self.path.stat()
            if (info.st_mtime_ns, info.st_size) != self._stamp:
                self._load()

    def _save(self) -> None:
        doc = {"format": FORMAT, "current": self._current, "keys": self._raw}
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(doc, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        self._load()

    def current(self) -> str:
        with self._lock:
            self._fresh()
            return self._current

    def versions(self) -> list[str]:
        with self._lock:
            self._fresh()
            return sorted(self._raw, key=lambda k: int(k.rpartition("-")[2]))

    def wrap(self, key: bytes, context: bytes) -> tuple[str, bytes]:
        with self._lock:
            self._fresh()
            nonce = os.urandom(12)
            return self._current, nonce + self._keys[self._current].encrypt(nonce, key, context)

    def unwrap(self, kek: str, wrapped: bytes, context: bytes) -> bytes:
        with self._lock:
            self._fresh()  # a stat: unwrapping is rare (keys are cached), and a retired KEK
            aead = self._keys.get(kek)  # must stop working in every process
        if aead is None:
            raise KeyUnavailable(f"key-encryption key {kek} is not in {self.path}: it was "
                                 "retired, or this is the wrong key file")
        try:
            return aead.decrypt(wrapped[:12], wrapped[12:], context)
        except InvalidTag:
            raise KeyUnavailable(f"a data key does not unwrap under {kek} from {self.path}: "
                                 "wrong key file, or the key row was altered") from None

    def rewrap(self, kek: str, wrapped: bytes, context: bytes) -> tuple[str, bytes]:
        return self.wrap(self.unwrap(kek, wrapped, context), context)

    def rotate(self) -> str:
        with self._lock:
            self._fresh()
            number = max(int(k.rpartition("-")[2]) for k in self._raw) + 1
            self._current = f"local-{number}"
            self._raw[self._current] = _b64(new_key())
            self._save()
            return self._current

    def retire(self, keep: set[str]) -> list[str]:
        with self._lock:
            self._fresh()
            gone = [k for k in self._raw if k not in keep and k != self._current]
            if gone:
                for kek in gone:
                    del self._raw[kek]
                self._save()
            return gone
