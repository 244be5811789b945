"""The audit index behind the commit (security/audit_backlog.py), on SQLite and PostgreSQL:
appending writes no ``audit_ref`` rows; a search first indexes every committed event; the
writer thread indexes when idle or when enough events have gathered; a process killed before
indexing loses nothing; two catch-ups at once index each event once; an incremental backup
taken while part of the trail is unindexed restores a trail whose search finds every event;
the rows of a chunk are exactly ``index_rows`` of each body (the shared parts extracted once)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medarchive.backup.keys import load_key
from medarchive.backup.restore import plan_restore, reindex_with, restore
from medarchive.backup.snapshot import create_backup
from medarchive.fhir.search.index import build_indexer
from medarchive.security import audit, audit_backlog
from medarchive.security.actor import Actor
from medarchive.security.audit import AuditTrail
from medarchive.security.audit_backlog import behind, catch_up
from medarchive.security.audit_events import audit_event
from medarchive.security.audit_index import index_rows, parse_audit_search
from medarchive.store import open_store
from medarchive.store.sql.database import Database, open_database
from medarchive.store.sql.migrations import migrate

PEOPLE = [Actor("user", "alice", "physician", (), address="10.0.0.7"),
          Actor("user", "bob", "nurse", (), address="10.0.1.9"),
          Actor("client", "lab", "integration", (), client_id="lab")]
T0 = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
CHILD = """
import os, signal, sys
from datetime import UTC, datetime, timedelta
from medarchive.security import audit, audit_backlog
from medarchive.security.actor import Actor
from medarchive.security.audit import AuditTrail
from medarchive.security.audit_events import audit_event
from medarchive.store.sql.database import open_database
from medarchive.store.sql.migrations import migrate

audit.INDEX_IDLE_S = 3600.0  # the writer would index after an idle second: crash before
db = open_database(sys.argv[1])
migrate(db)
trail = AuditTrail(db, lambda: datetime(2026, 3, 1, tzinfo=UTC))
who = Actor("user", "carol", "physician", ())
for i in range(int(sys.argv[2])):
    trail.record(audit_event(who, "read", datetime(2026, 3, 1, tzinfo=UTC), status=200,
                             entities=[f"Observation/c{i}"], patients=[f"p{i % 3}"]))
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture
def db(sql_url: str) -> Iterator[Database]:
    opened = open_database(sql_url)
    migrate(opened)
    yield opened
    opened.close()


def _event(i: int) -> dict[str, Any]:
    who = PEOPLE[i % 3]
    return audit_event(who, ("read", "search", "create")[i % 3], T0 + timedelta(seconds=i),
                       status=200, entities=[f"Observation/o{i}"], patients=[f"p{i % 4}"])


def _refs(db: Database) -> set[tuple[int, str, str, str]]:
    with db.reading() as cur:
        cur.execute("SELECT seq, name, value, system FROM audit_ref")
        return {(int(seq), name, value, system) for seq, name, value, system in cur.fetchall()}


def _expected(trail: AuditTrail) -> set[tuple[int, str, str, str]]:
    return {(seq, name, value, system) for seq, event in trail.events(limit=100_000)
            for name, value, system in index_rows(event)}


def _found(trail: AuditTrail, *params: tuple[str, str]) -> list[int]:
    events, _ = trail.search(parse_audit_search([*params, ("_count", "1000")]))
    return [seq for seq, _ in events]


def test_a_search_sees_events_committed_but_not_indexed(db: Database) -> None:
    trail = AuditTrail(db, lambda: T0, background_index=False)
    for i in range(30):
        trail.record(_event(i))
    with db.writing() as cur:  # a write's own event, appended in its transaction
        trail.append(cur, [audit_event(PEOPLE[0], "update", T0, status=200,
                                       entities=["Patient/p9"], patients=["p9"])])
    assert behind(db) == 31 and _refs(db) == set()  # the appends wrote no index rows
    assert _found(trail, ("agent", "alice")) == list(range(1, 32, 3))
    assert behind(db) == 0 and _refs(db) == _expected(trail)
    trail.record(_event(40))
    assert trail.search(parse_audit_search([("entity", "Observation/o40"),
                                            ("_summary", "count")])) == ([], 1)
    assert _found(trail, ("patient", "p9"), ("action", "U")) == [31]
    assert trail.verify() == (32, None)


def test_the_writer_indexes_when_idle_and_when_enough_gathered(
        db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit, "INDEX_IDLE_S", 3600.0)
    monkeypatch.setattr(audit, "INDEX_EVERY", 8)
    trail = AuditTrail(db, lambda: T0)
    try:
        for i in range(7):
            trail.record(_event(i))
        time.sleep(0.2)
        assert behind(db) == 7  # fewer than INDEX_EVERY, not idle long enough
        trail.record(_event(7))
        _until(lambda: behind(db) == 0)
        monkeypatch.setattr(audit, "INDEX_IDLE_S", 0.05)
        trail.record(_event(8))
        _until(lambda: behind(db) == 0)
        assert _refs(db) == _expected(trail)
    finally:
        trail.close()


def _until(done: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, "the writer did not index in time"
        time.sleep(0.02)


def test_events_of_a_killed_process_are_indexed_after_restart(db: Database, sql_url: str) -> None:
    child = subprocess.run([sys.executable, "-c", CHILD, sql_url, "40"], capture_output=True)
    assert child.returncode == -9, child.stderr.decode()
    assert behind(db) == 40 and _refs(db) == set()  # committed, never indexed
    trail = AuditTrail(db, lambda: T0)
    trail.record(_event(0))  # the restarted writer indexes what the dead one left too
    trail.close()
    assert behind(db) == 0 and _refs(db) == _expected(trail)
    assert _found(trail, ("agent", "carol")) == list(range(1, 41))
    assert trail.verify() == (41, None)


def test_two_catch_ups_at_once_index_each_event_once(db: Database, sql_url: str) -> None:
    trail = AuditTrail(db, lambda: T0, background_index=False)
    with db.writing() as cur:
        trail.append(cur, [_event(i) for i in range(3000)])
    other = open_database(sql_url)
    start = threading.Barrier(2)
    counts: list[int] = []

    def run(on: Database) -> None:
        start.wait()
        counts.append(catch_up(on, chunk=100))
    try:
        threads = [threading.Thread(target=run, args=(on,)) for on in (db, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        other.close()
    assert sum(counts) == 3000  # no event indexed twice
    assert behind(db) == 0 and _refs(db) == _expected(trail)


def test_incremental_backups_of_a_partly_indexed_trail_restore_a_searchable_trail(
        sql_url: str, tmp_path: Path, spec: Any) -> None:
    indexer = build_indexer(spec)
    key = load_key(tmp_path / "keys" / "backup.key", create=True)
    backups = tmp_path / "backups"
    store = open_store(sql_url, indexer)
    source = store.db  # type: ignore[attr-defined]
    trail = AuditTrail(source, lambda: T0, background_index=False)
    try:
        for i in range(10):
            trail.record(_event(i))
        catch_up(source)
        for i in range(10, 15):
            trail.record(_event(i))
        create_backup(source, backups, key)  # indexed up to 10 of 15
        for i in range(15, 20):
            trail.record(_event(i))
        catch_up(source)  # indexes 11..20, after the full backup's mark
        for i in range(20, 23):
            trail.record(_event(i))
        create_backup(source, backups, key, incremental=True)
        for i in range(23, 25):
            trail.record(_event(i))
        create_backup(source, backups, key, incremental=True)
        target_url = f"sqlite:///{tmp_path / 'restored.db'}"
        restore(plan_restore(backups, key), key, target_url, reindex=reindex_with(indexer))
        target = open_database(target_url)
        try:
            restored = AuditTrail(target, lambda: T0, background_index=False)
            assert behind(target) == 25 - 20  # the last backup's mark came with it
            assert _found(restored, ("agent", "bob")) == list(range(2, 26, 3))
            assert _found(restored, ("entity", "Observation/o12")) == [13]
            assert _refs(target) == _expected(restored)
            catch_up(source)
            assert _refs(target) == _refs(source)
            assert restored.verify() == (25, None)
        finally:
            target.close()
    finally:
        trail.close()
        store.close()


def test_indexed_values_keep_every_character(db: Database) -> None:
    """The rows travel as JSON on PostgreSQL: quotes, backslashes, newlines and non-ASCII
    text arrive as they were extracted."""
    trail = AuditTrail(db, lambda: T0, background_index=False)
    odd = 'O\'Brien "Dr" \\ \n\t é 漢字 🙂'
    event = audit_event(PEOPLE[0], "read", T0, status=200, entities=[f"Observation/{odd}"])
    event["agent"][0]["name"] = odd
    event["agent"][0]["altId"] = odd
    trail.record(event)
    assert catch_up(db) == 1
    assert _refs(db) == _expected(trail)
    assert _found(trail, ("agent-name", odd[:9])) == [1]
    assert _found(trail, ("altid", odd.replace(",", "\\,"))) == [1]


def test_rows_already_indexed_above_the_mark_are_skipped(db: Database) -> None:
    """Rows above the mark exist only after a restore of a backup from before migration
    0021 (every row, mark at zero): PostgreSQL inserts without ``ON CONFLICT`` first, and a
    chunk that meets such rows is rolled back and indexed again ignoring them."""
    trail = AuditTrail(db, lambda: T0, background_index=False)
    for i in range(12):
        trail.record(_event(i))
    assert catch_up(db) == 12
    indexed = _refs(db)
    with db.writing() as cur:
        cur.execute("UPDATE audit_indexed SET seq = 0 WHERE id = 1")
        cur.execute("DELETE FROM audit_ref WHERE seq > 8")  # a partly indexed tail
    assert catch_up(db, chunk=5) == 12
    assert behind(db) == 0 and _refs(db) == indexed == _expected(trail)
    assert _found(trail, ("agent", "lab")) == [3, 6, 9, 12]


ODD = st.sampled_from(["a", "B", "", None, 1, True, [], {}])  # few values: parts repeat
CODING = st.fixed_dictionaries({}, optional={"system": ODD, "code": ODD})
CODINGS = st.one_of(CODING, st.lists(CODING, max_size=2), ODD)
AGENT = st.fixed_dictionaries({}, optional={
    "who": st.fixed_dictionaries({}, optional={
        "identifier": st.fixed_dictionaries({}, optional={"value": ODD}), "reference": ODD}),
    "altId": ODD, "name": ODD, "network": st.fixed_dictionaries({}, optional={"address": ODD}),
    "role": st.lists(st.fixed_dictionaries({}, optional={"text": ODD, "coding": CODINGS}),
                     max_size=2),
    "purposeOfUse": st.lists(st.fixed_dictionaries({}, optional={"coding": CODINGS}),
                             max_size=2)})
EVENT = st.fixed_dictionaries({}, optional={
    "action": ODD, "outcome": ODD, "type": CODINGS, "subtype": CODINGS,
    "purposeOfEvent": st.lists(st.fixed_dictionaries({}, optional={"coding": CODINGS}),
                               max_size=2),
    "agent": st.one_of(st.lists(AGENT, max_size=2), ODD),
    "entity": st.lists(st.fixed_dictionaries({}, optional={
        "what": st.fixed_dictionaries({}, optional={"reference": ODD})}), max_size=3),
    "recorded": ODD})


@given(st.lists(EVENT, max_size=8))
def test_a_chunks_rows_are_the_index_rows_of_each_body(events: list[dict[str, Any]]) -> None:
    bodies = [(seq, orjson.dumps(event).decode()) for seq, event in enumerate(events, 1)]
    expected = sorted((name, value, system, seq) for seq, body in bodies
                      for name, value, system in index_rows(orjson.loads(body)))
    assert audit_backlog._refs(bodies) == expected
