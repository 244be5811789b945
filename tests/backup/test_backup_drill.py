"""Every drill scenario of issue 5 recovers its copy, with RTO/RPO measured and reported, and
leaves the live database untouched."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from backup_helpers import add_security_rows, at, family_indexer, put, state

from medarchive.backup.drill import SCENARIOS, Drill, write_report
from medarchive.store.sql.store import SqlStore

Open = Callable[[str], SqlStore]


@pytest.fixture
def live(sqlite_url: str, open_sql: Open) -> SqlStore:
    store = open_sql(sqlite_url)
    for i in range(30):
        put(store, "Patient", f"p{i}", at(i))
    add_security_rows(store)
    return store


def test_every_scenario_recovers(tmp_path: Path, live: SqlStore, sqlite_url: str) -> None:
    before = state(live)
    results = Drill(sqlite_url, tmp_path / "drill", family_indexer, writes=10).run([])
    assert [r.scenario for r in results] == list(SCENARIOS)
    for r in results:
        assert r.verified, r
        assert r.rto_seconds > 0 and r.detected != "not detected"
    by_name = {r.scenario: r for r in results}
    assert by_name["lost-database"].lost_versions == 2  # the writes after the last backup
    assert by_name["corrupted-last-backup"].lost_versions == 12  # one backup further back
    assert by_name["mass-delete"].lost_versions == by_name["mass-delete"].restored_resources // 2
    assert "escrow" in by_name["lost-key"].detail and "escrow" in by_name["ransomware"].detail
    assert state(live) == before
    json_path, page = write_report(results, tmp_path / "report.json", sqlite_url)
    doc = orjson.loads(json_path.read_bytes())
    assert doc["passed"] and len(doc["scenarios"]) == len(SCENARIOS)
    assert "| lost-key |" in page.read_text()


def test_unknown_scenario_is_refused(tmp_path: Path, live: SqlStore, sqlite_url: str) -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        Drill(sqlite_url, tmp_path / "d", family_indexer).run(["meteor"])


def _schemas(url: str, like: str) -> list[str]:
    import psycopg
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT nspname FROM pg_namespace WHERE nspname "
                                           "LIKE %s", (like,)).fetchall()]


def test_every_scenario_recovers_on_postgresql(tmp_path: Path, postgres_schema_url: str,
                                               open_sql: Open) -> None:
    live = open_sql(postgres_schema_url)
    for i in range(30):
        put(live, "Patient", f"p{i}", at(i))
    add_security_rows(live)
    before = state(live)
    drill = Drill(postgres_schema_url, tmp_path / "drill", family_indexer, writes=10)
    results = drill.run([])
    assert [r.scenario for r in results] == list(SCENARIOS)
    for r in results:
        assert r.verified, r
        assert r.rto_seconds > 0 and r.detected != "not detected" and "None" not in r.detected
    by_name = {r.scenario: r for r in results}
    assert "schema" in by_name["lost-database"].detected
    assert "lack their current version" in by_name["corrupted-database"].detected
    assert by_name["lost-database"].lost_versions == 2
    assert by_name["corrupted-last-backup"].lost_versions == 12
    assert "skipped" in by_name["corrupted-last-backup"].detail
    assert by_name["mass-delete"].lost_versions == by_name["mass-delete"].restored_resources // 2
    assert "escrow" in by_name["lost-key"].detail and "escrow" in by_name["ransomware"].detail
    assert state(live) == before
    own = drill._prefix.replace("_", "\\_") + "%"  # not a concurrent test's drill
    assert _schemas(postgres_schema_url, own) == []  # every copy dropped afterwards
    json_path, page = write_report(results, tmp_path / "report.json", postgres_schema_url)
    assert orjson.loads(json_path.read_bytes())["passed"]
    assert "| corrupted-database |" in page.read_text()
