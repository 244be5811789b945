"""A bulk import killed mid-way (a real process, SIGKILL) and run again: every resource is
stored exactly once, no chunk is half written, and the search index is exactly what
extraction gives (SQLite and PostgreSQL, encryption at rest on)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from bulk_checks import index_rows

from medarchive.app import build_services
from medarchive.demo.generate import generate_ndjson
from medarchive.settings import load_settings

HERE = Path(__file__).resolve().parent
CHUNK = 40


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bulk.db'}"
    return str(request.getfixturevalue("postgres_schema_url"))


@pytest.fixture
def ndjson(tmp_path: Path) -> tuple[Path, list[str]]:
    resources = list(generate_ndjson(4, seed=11))
    path = tmp_path / "demo.ndjson"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))
    return path, sorted(f"{r['resourceType']}/{r['id']}" for r in resources)


def environment(url: str, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "MEDARCHIVE_DATABASE_URL": url, "MEDARCHIVE_AUTH": "off",
            "MEDARCHIVE_ENCRYPTION_KEY_FILE": str(tmp_path / "kek.key")}


def start(path: Path, env: dict[str, str], **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(HERE / "bulk_crash_process.py"), str(path), "--processes", "1",
         "--bulk-chunk", str(CHUNK)], env={**env, **extra}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the command and its worker process (its own session)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(30)
    if proc.stderr is not None:
        proc.stderr.close()


def services(url: str, tmp_path: Path) -> Any:
    return build_services(load_settings({"database_url": url, "auth": "off",
                                         "encryption_key_file": str(tmp_path / "kek.key")},
                                        environ={}))


def scalar(db: Any, sql: str) -> int:
    with db.reading() as cur:
        cur.execute(sql)
        return int(cur.fetchone()[0])


def committed(db: Any) -> int:
    return scalar(db, "SELECT COUNT(*) FROM applied_key WHERE key LIKE 'bulk-import/%'")


def check_whole_chunks(url: str, tmp_path: Path) -> int:
    """What a killed run left: whole chunks only (resources, versions and index rows of every
    committed chunk, nothing of the chunk it died in); returns the resources stored."""
    loaded = services(url, tmp_path)
    try:
        db = loaded.store.db
        chunks = committed(db)
        stored = scalar(db, "SELECT COUNT(*) FROM resource")
        assert stored == chunks * CHUNK
        assert scalar(db, "SELECT COUNT(*) FROM resource_version") == stored
        before = index_rows(db)
        loaded.store.reindex(job="check", restart=True)
        assert index_rows(db) == before
        return stored
    finally:
        loaded.close()


def check_exactly_once(url: str, tmp_path: Path, expected: list[str]) -> None:
    loaded = services(url, tmp_path)
    try:
        db = loaded.store.db
        with db.reading() as cur:
            cur.execute("SELECT res_type, res_id, version FROM resource")
            rows = cur.fetchall()
        assert sorted(f"{t}/{i}" for t, i, _ in rows) == expected
        assert {version for _, _, version in rows} == {1}
        assert scalar(db, "SELECT COUNT(*) FROM resource_version") == len(expected)
        assert committed(db) == -(-len(expected) // CHUNK)
        for version in loaded.store.changes(0, 100_000):  # every body opens (sealed whole)
            assert version.resource()["meta"]["versionId"] == "1"
        before = index_rows(db)
        assert before["idx_token"] and before["idx_reference"]
        loaded.store.reindex(job="check", restart=True)
        assert index_rows(db) == before
    finally:
        loaded.close()


def resume(path: Path, env: dict[str, str]) -> None:
    proc = start(path, env)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-2000:]


def test_killed_inside_a_chunk_transaction(url: str, tmp_path: Path,
                                           ndjson: tuple[Path, list[str]]) -> None:
    path, expected = ndjson
    env = environment(url, tmp_path)
    proc = start(path, env, KILL_AT_CHUNK="4")
    proc.wait(300)
    stop(proc)
    assert proc.returncode == -signal.SIGKILL
    assert check_whole_chunks(url, tmp_path) == 3 * CHUNK
    resume(path, env)
    check_exactly_once(url, tmp_path, expected)


def test_killed_from_outside_at_any_moment(url: str, tmp_path: Path,
                                           ndjson: tuple[Path, list[str]]) -> None:
    path, expected = ndjson
    env = environment(url, tmp_path)
    watcher = services(url, tmp_path)
    proc = start(path, env)
    try:
        deadline = time.monotonic() + 300
        while committed(watcher.store.db) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] \
                if proc.stderr else "exited"
            assert time.monotonic() < deadline
            time.sleep(0.005)
    finally:
        stop(proc)
        watcher.close()
    assert proc.returncode == -signal.SIGKILL
    stored = check_whole_chunks(url, tmp_path)
    assert 0 < stored < len(expected)  # killed mid-way
    resume(path, env)
    check_exactly_once(url, tmp_path, expected)

