"""The hash-chained audit trail: append, verify, and tamper detection on every backend."""

from __future__ import annotations

from typing import Any

import orjson

from medarchive.security.actor import Actor
from medarchive.security.audit_events import audit_event
from medarchive.security.service import Security

WHO = Actor("user", "alice", "physician", (), address="10.0.0.7")


def _fill(security: Security, n: int) -> None:
    for i in range(n):
        security.trail.record(audit_event(WHO, "read", security.trail.now(), status=200,
                                          entities=[f"Patient/p{i}"]))


def _exec(security: Security, sql: str, params: Any = ()) -> None:
    with security.db.writing() as cur:
        cur.execute(security.db.sql(sql), params)


def test_event_shape(security: Security) -> None:
    event = audit_event(WHO, "search", security.trail.now(), status=200, query="name=x",
                        count=3)
    assert event["resourceType"] == "AuditEvent"
    assert event["action"] == "E" and event["outcome"] == "0"
    assert event["agent"][0]["network"]["address"] == "10.0.0.7"
    assert "results=3" in event["outcomeDesc"]


def test_intact_chain_verifies(security: Security) -> None:
    _fill(security, 5)
    assert security.trail.verify() == (5, None)
    assert [seq for seq, _ in security.trail.events()] == [1, 2, 3, 4, 5]


def test_edit_is_detected(security: Security) -> None:
    _fill(security, 5)
    _, body = security.trail.events()[2]
    body["agent"][0]["who"]["identifier"]["value"] = "mallory"
    _exec(security, "UPDATE audit_event SET body = ? WHERE seq = 3",
          (orjson.dumps(body, option=orjson.OPT_SORT_KEYS).decode(),))
    checked, problem = security.trail.verify()
    assert problem is not None and problem.seq == 3 and checked == 2


def test_deletion_is_detected(security: Security) -> None:
    _fill(security, 5)
    _exec(security, "DELETE FROM audit_event WHERE seq = 2")
    _, problem = security.trail.verify()
    assert problem is not None and problem.seq == 2


def test_truncated_tail_is_detected(security: Security) -> None:
    _fill(security, 4)
    _exec(security, "DELETE FROM audit_event WHERE seq = 4")
    _, problem = security.trail.verify()
    assert problem is not None and problem.seq == 4


def test_reorder_is_detected(security: Security) -> None:
    _fill(security, 5)
    _exec(security, "UPDATE audit_event SET seq = 100 WHERE seq = 2")
    _exec(security, "UPDATE audit_event SET seq = 2 WHERE seq = 3")
    _exec(security, "UPDATE audit_event SET seq = 3 WHERE seq = 100")
    _, problem = security.trail.verify()
    assert problem is not None and problem.seq == 2


def test_recomputed_row_breaks_the_next_link(security: Security) -> None:
    """An attacker who rewrites a row and its own hash still breaks the following row."""
    from medarchive.security.audit import chain_hash
    _fill(security, 4)
    with security.db.reading() as cur:
        cur.execute("SELECT prev_hash FROM audit_event WHERE seq = 2")
        prev = cur.fetchone()[0]
    body = '{"forged":true}'
    _exec(security, "UPDATE audit_event SET body = ?, hash = ? WHERE seq = 2",
          (body, chain_hash(prev, 2, body)))
    _, problem = security.trail.verify()
    assert problem is not None and problem.seq == 3


def test_concurrent_appends_keep_one_chain(security: Security) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def append(n: int) -> list[int]:
        return [security.trail.record(audit_event(WHO, "read", security.trail.now(),
                                                  status=200, entities=[f"Patient/{n}-{i}"]))
                for i in range(15)]
    with ThreadPoolExecutor(6) as pool:
        seqs = [seq for chunk in pool.map(append, range(6)) for seq in chunk]
    assert sorted(seqs) == list(range(1, 91))
    assert security.trail.verify() == (90, None)


def test_failed_group_raises_for_every_caller(security: Security,
                                              monkeypatch: Any) -> None:
    def broken(batch: Any) -> None:
        raise OSError("disk full")
    monkeypatch.setattr(security.trail, "_write", broken)
    import pytest
    with pytest.raises(OSError):
        security.trail.record(audit_event(WHO, "read", security.trail.now(), status=200))


def test_group_commit_waits_for_an_interaction_under_way(security: Security,
                                                         monkeypatch: Any) -> None:
    """A commit about to start waits for an interaction that is still running (``arriving``)
    so both events share one durable commit instead of two."""
    import threading
    import time

    from medarchive.security import audit
    monkeypatch.setattr(audit, "GATHER_S", 30.0)
    groups: list[int] = []
    write = security.trail._write

    def counting(batch: Any) -> None:
        groups.append(len(batch))
        write(batch)
    monkeypatch.setattr(security.trail, "_write", counting)
    event = audit_event(WHO, "read", security.trail.now(), status=200)
    with security.trail.arriving():
        other = threading.Thread(target=security.trail.record, args=(event,))
        other.start()
        while not security.trail._queue:  # the other event is queued and its commit waits
            time.sleep(0.001)
        assert groups == []
        security.trail.record(event)
    other.join()
    assert groups == [2]
    assert security.trail.verify() == (2, None)


def test_a_slow_commit_makes_the_next_group_wait_longer(security: Security,
                                                       monkeypatch: Any) -> None:
    """After a commit that took long, the next group waits up to half that time (more than
    ``GATHER_S``) for an interaction under way, so both share the next commit."""
    import threading
    import time

    from medarchive.security import audit
    monkeypatch.setattr(audit, "MAX_GATHER_S", 10.0)
    groups: list[int] = []
    write = security.trail._write

    def slow(batch: Any) -> None:
        groups.append(len(batch))
        time.sleep(0.4)
        write(batch)
    monkeypatch.setattr(security.trail, "_write", slow)
    event = audit_event(WHO, "read", security.trail.now(), status=200)
    security.trail.record(event)  # one slow commit: the next group may wait up to 0.2 s
    with security.trail.arriving():
        other = threading.Thread(target=security.trail.record, args=(event,))
        other.start()
        while not security.trail._queue:
            time.sleep(0.001)
        time.sleep(audit.GATHER_S * 5)  # well past GATHER_S: only the longer wait joins us
        security.trail.record(event)
    other.join()
    assert groups == [1, 2]
    assert security.trail.verify() == (3, None)
