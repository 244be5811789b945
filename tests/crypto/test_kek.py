"""The local key file (crypto.kek.LocalKeyFile): permissions, wrapping, rotation, retiring,
and other processes' changes."""

from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medarchive.crypto.envelope import KeyUnavailable, new_key
from medarchive.crypto.kek import LocalKeyFile


def test_created_owner_only_and_refused_when_readable_by_others(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "medarchive.kek"
    keys = LocalKeyFile(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert keys.current() == "local-1" and keys.versions() == ["local-1"]
    path.chmod(0o640)
    with pytest.raises(KeyUnavailable, match="chmod 600"):
        LocalKeyFile(path)


def test_missing_file_is_not_recreated_when_create_is_off(tmp_path: Path) -> None:
    with pytest.raises(KeyUnavailable, match="not found"):
        LocalKeyFile(tmp_path / "gone.kek", create=False)
    assert not (tmp_path / "gone.kek").exists()


@given(key=st.binary(min_size=32, max_size=32), context=st.binary(max_size=64))
def test_wrap_unwrap_round_trip(tmp_path_factory: pytest.TempPathFactory, key: bytes,
                                context: bytes) -> None:
    keys = LocalKeyFile(tmp_path_factory.getbasetemp() / "prop.kek")
    kek, wrapped = keys.wrap(key, context)
    assert key not in wrapped
    assert keys.unwrap(kek, wrapped, context) == key
    with pytest.raises(KeyUnavailable, match="does not unwrap"):
        keys.unwrap(kek, wrapped, context + b"x")


def test_rotation_is_seen_by_another_process_and_retiring_destroys(tmp_path: Path) -> None:
    path = tmp_path / "k.kek"
    server, admin = LocalKeyFile(path), LocalKeyFile(path)
    key = new_key()
    old, wrapped = server.wrap(key, b"ctx")
    assert admin.rotate() == "local-2"
    assert server.current() == "local-2"  # the running server picks the new version up
    new, rewrapped = server.rewrap(old, wrapped, b"ctx")
    assert new == "local-2" and server.unwrap(new, rewrapped, b"ctx") == key
    assert admin.retire({"local-2"}) == ["local-1"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(json.loads(path.read_text())["keys"]) == ["local-2"]
    with pytest.raises(KeyUnavailable, match="local-1 is not in"):
        server.unwrap(old, wrapped, b"ctx")


def test_processes_starting_together_share_one_file(tmp_path: Path) -> None:
    path = tmp_path / "race.kek"
    made: list[LocalKeyFile] = []
    threads = [threading.Thread(target=lambda: made.append(LocalKeyFile(path)))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    kek, wrapped = made[0].wrap(b"k" * 32, b"")
    assert all(keys.unwrap(kek, wrapped, b"") == b"k" * 32 for keys in made)
    assert [p.name for p in tmp_path.iterdir()] == ["race.kek"]


def test_not_a_key_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.kek"
    path.write_text('{"format": "other"}')
    path.chmod(0o600)
    with pytest.raises(KeyUnavailable, match="not a MedArchive key file"):
        LocalKeyFile(path)
