"""``audit_read_commit = "group"`` on SQLite and PostgreSQL: reads and searches are answered once
their AuditEvent is queued, the writer commits the queued events together, the trail stays one
intact chain in processing order, and a lost group makes the server refuse every further
interaction (fail closed). Writes keep their AuditEvent in their own transaction."""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from http_env import Env, bearer, open_env

from medarchive.security import audit
from medarchive.security.actor import Actor
from medarchive.security.audit import AuditTrail
from medarchive.security.audit_events import audit_event
from medarchive.security.scopes import parse_scopes
from medarchive.service.request import FhirRequest

CLERK = Actor("user", "clerk", "records_clerk", parse_scopes("user/*.cruds")[0])
READS = 30


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path: Path, spec: Any,
        monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    monkeypatch.setattr(audit, "GROUP_WINDOW_S", 3600.0)  # commits only when flushed (close)
    with open_env(request, request.param, tmp_path, spec, audit_read_commit="group") as built:
        built.services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": f"p{i}"},
             "request": {"method": "PUT", "url": f"Patient/p{i}"}} for i in range(3)]})
        yield built


def _groups(trail: AuditTrail, monkeypatch: pytest.MonkeyPatch, fail: bool = False
            ) -> list[int]:
    """Record the size of every group commit (or make each one fail)."""
    write = trail._write
    sizes: list[int] = []

    def counting(batch: Any) -> None:
        sizes.append(len(batch))
        if fail:
            raise OSError("disk full")
        write(batch)
    monkeypatch.setattr(trail, "_write", counting)
    return sizes


def test_reads_are_answered_before_their_group_commits(env: Env,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    trail = env.services.security.trail
    sizes = _groups(trail, monkeypatch)
    before = len(env.events())
    router = env.services.router
    for i in range(READS):
        request = FhirRequest("GET", f"Patient/p{i % 3}") if i % 2 else \
            FhirRequest("GET", "Patient", (("_id", f"p{i % 3}"),))
        assert router.handle(request, CLERK).status == 200
    assert len(env.events()) == before  # acknowledged, not yet durable
    trail.close()  # the writer commits what is queued
    assert sizes == [READS]
    events = env.events()[before:]
    assert [e["subtype"][0]["code"] for e in events] == ["search", "read"] * (READS // 2)
    assert trail.verify()[1] is None


def test_a_queued_event_keeps_only_its_body(env: Env) -> None:
    """Tickets waiting for their group keep the encoded event, not its dozens of dicts and
    lists: those kept the garbage collector busy (a full collection every few thousand
    reads, ~45 ms each)."""
    class Event(dict[str, Any]):  # a dict that can be weakly referenced
        pass

    trail = env.services.security.trail
    event = Event(audit_event(CLERK, "read", trail.now(), status=200, entities=["Patient/p1"]))
    gone = weakref.ref(event)
    ticket = trail.submit(event, early=True)
    del event
    assert gone() is None and not ticket.done
    trail.close()
    assert ticket.done and env.events()[-1]["entity"][0]["what"]["reference"] == "Patient/p1"


def test_http_reads_share_one_commit(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    trail = env.services.security.trail
    sizes = _groups(trail, monkeypatch)
    clerk = bearer(env.token(role="records_clerk", scope="user/*.rs"))
    for i in range(5):
        assert env.client.get(f"/fhir/Patient/p{i % 3}", headers=clerk).status_code == 200
    trail.close()
    assert sizes == [5]


def test_writes_and_batches_still_wait(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write commits its event with itself; a batch's entries wait for their events, so
    the trail keeps the batch's processing order (R4 §3.1.0.11.1: writes, then reads)."""
    trail = env.services.security.trail
    admin = bearer(env.token(role="administrator", scope="user/*.cruds"))
    before = len(env.events())
    created = env.client.put("/fhir/Patient/p9", headers=admin,
                             json={"resourceType": "Patient", "id": "p9"})
    assert created.status_code == 201
    assert env.events()[-1]["subtype"][0]["code"] == "update"
    batch = env.client.post("/fhir", headers=admin, json={
        "resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": "Patient/p1"}},
            {"resource": {"resourceType": "Patient", "id": "p8"},
             "request": {"method": "PUT", "url": "Patient/p8"}}]})
    assert batch.status_code == 200, batch.text
    trail.close()
    codes = [e["subtype"][0]["code"] for e in env.events()[before:]]
    assert codes == ["update", "update", "read", "batch"]


def test_a_lost_group_refuses_every_later_interaction(env: Env,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    trail = env.services.security.trail
    _groups(trail, monkeypatch, fail=True)
    clerk = bearer(env.token(role="records_clerk", scope="user/*.cruds"))
    assert env.client.get("/fhir/Patient/p1", headers=clerk).status_code == 200
    trail.close()  # its group commit fails: an acknowledged event is lost
    assert trail.failed is not None
    for method, path, body in (("GET", "/fhir/Patient/p1", None),
                               ("GET", "/fhir/Patient?_id=p2", None),
                               ("PUT", "/fhir/Patient/p7", {"resourceType": "Patient",
                                                            "id": "p7"})):
        refused = env.client.request(method, path, headers=clerk, json=body)
        assert refused.status_code == 500, (method, path)
        assert "audit trail" in refused.json()["issue"][0]["diagnostics"]
    assert env.services.store.read("Patient", "p7") is None


def test_a_slow_writer_makes_reads_wait(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once an acknowledged event has waited ``MAX_EARLY_S`` without being committed, reads
    are no longer acknowledged early."""
    trail = env.services.security.trail
    monkeypatch.setattr(audit, "MAX_EARLY_S", 0.0)  # the first one is already too old
    first = trail.submit({"resourceType": "AuditEvent", "action": "R"}, early=True)
    later = trail.submit({"resourceType": "AuditEvent", "action": "R"}, early=True)
    assert first.early and not later.early
    trail.close()
    assert later.wait() == first.wait() + 1


def test_the_setting_is_checked(env: Env) -> None:
    with pytest.raises(ValueError, match="audit_read_commit"):
        AuditTrail(env.services.security.trail.db, env.clock, "later")
