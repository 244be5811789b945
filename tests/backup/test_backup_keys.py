"""The backup key file: created owner-only, refused when exposed, escrowed, and binding."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medarchive.backup.errors import BackupError
from medarchive.backup.keys import escrow_key, load_key


def test_created_on_first_use_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "backup.key"
    key = load_key(path, create=True)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert load_key(path) == key


def test_missing_key_names_the_escrow_copy(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="escrow"):
        load_key(tmp_path / "none.key")


def test_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "backup.key"
    load_key(path, create=True)
    path.chmod(0o644)
    with pytest.raises(BackupError, match="chmod 600"):
        load_key(path)


def test_garbage_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "backup.key"
    path.write_bytes(b"garbage")
    path.chmod(0o600)
    with pytest.raises(BackupError, match="not valid"):
        load_key(path)


def test_escrow_copy_is_the_same_key(tmp_path: Path) -> None:
    key = load_key(tmp_path / "a.key", create=True)
    assert escrow_key(tmp_path / "a.key", tmp_path / "escrow.key") == key
    assert os.stat(tmp_path / "escrow.key").st_mode & 0o777 == 0o600


def test_ciphertext_is_bound_to_its_context_and_key(tmp_path: Path) -> None:
    key = load_key(tmp_path / "a.key", create=True)
    other = load_key(tmp_path / "b.key", create=True)
    blob = key.encrypt(b"secret", b"b1/file.0")
    assert key.decrypt(blob, b"b1/file.0") == b"secret"
    with pytest.raises(BackupError, match="cannot be decrypted"):
        key.decrypt(blob, b"b1/file.1")
    with pytest.raises(BackupError, match="cannot be decrypted"):
        other.decrypt(blob, b"b1/file.0")
    signature = key.sign(b"manifest")
    assert key.verify(b"manifest", signature) and not other.verify(b"manifest", signature)
