"""The HTTP layer's wait for the audit commit, on SQLite and PostgreSQL: reads and searches
queue their AuditEvents for the writer thread and await its group commit on the event loop
(``web.fhir_api.handle_durably``), so one worker thread serves many requests while a commit
runs; still, no response returns before its AuditEvents are durable, the chain stays intact,
and a failed commit answers 500 (fail closed)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest
from http_env import Env, bearer, open_env

from medarchive.security.actor import Actor
from medarchive.security.audit_events import audit_event
from medarchive.security.scopes import parse_scopes
from medarchive.service.request import FhirRequest
from medarchive.web.fhir_api import handle_durably

CLERK = Actor("user", "clerk", "records_clerk", parse_scopes("user/*.cruds")[0])
SLOW_COMMIT_S = 0.03  # a slow disk: long enough for requests to pile up behind one commit


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path: Path, spec: Any) -> Iterator[Env]:
    with open_env(request, request.param, tmp_path, spec) as built:
        built.services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": f"p{i}"},
             "request": {"method": "PUT", "url": f"Patient/p{i}"}} for i in range(4)]})
        yield built


def slow_groups(env: Env, monkeypatch: pytest.MonkeyPatch,
                fail: bool = False) -> list[int]:
    """Make each group commit slow (or fail); returns the list of group sizes written."""
    trail = env.services.security.trail
    write = trail._write
    groups: list[int] = []

    def slow(batch: Any) -> None:
        groups.append(len(batch))
        time.sleep(SLOW_COMMIT_S)
        if fail:
            raise OSError("disk full")
        write(batch)
    monkeypatch.setattr(trail, "_write", slow)
    return groups


async def _concurrently(env: Env, n: int, threads: int) -> list[tuple[int, int]]:
    """``n`` reads and searches at once through ``handle_durably`` with ``threads`` worker
    threads; per response (status, events durable when it returned)."""
    anyio.to_thread.current_default_thread_limiter().total_tokens = threads
    trail = env.services.security.trail
    router = env.services.router

    async def one(i: int) -> tuple[int, int]:
        request = FhirRequest("GET", f"Patient/p{i % 4}") if i % 2 else \
            FhirRequest("GET", "Patient", (("_id", f"p{i % 4}"),))
        response = await handle_durably(router, request, CLERK)
        return response.status, trail.head()[0]
    return await asyncio.gather(*(one(i) for i in range(n)))


def test_requests_share_commits_without_holding_threads(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    groups = slow_groups(env, monkeypatch)
    start = env.services.security.trail.head()[0]
    results = asyncio.run(_concurrently(env, 12, threads=1))
    assert [status for status, _ in results] == [200] * 12
    # when the k-th response returned, at least k of the events were durable
    durable = sorted(seq - start for _, seq in results)
    assert all(count >= k for k, count in enumerate(durable, 1)), durable
    assert sum(groups) == 12
    # one thread, yet requests did not queue behind each commit: they shared them
    assert len(groups) <= 4, groups
    trail = env.services.security.trail
    assert trail.verify()[1] is None
    assert [e["subtype"][0]["code"] for _, e in trail.events(after=start)].count("read") == 6


def test_a_failed_commit_fails_every_waiting_request(
        env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    slow_groups(env, monkeypatch, fail=True)
    results = asyncio.run(_concurrently(env, 6, threads=2))
    assert [status for status, _ in results] == [500] * 6


def test_http_read_and_search_fail_closed(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    clerk = bearer(env.token(role="records_clerk", scope="user/*.cruds"))
    assert env.client.get("/fhir/Patient/p1", headers=clerk).status_code == 200
    slow_groups(env, monkeypatch, fail=True)
    for path in ("/fhir/Patient/p1", "/fhir/Patient?_id=p2", "/fhir/Patient/p1/_history/1"):
        refused = env.client.get(path, headers=clerk)
        assert refused.status_code == 500, path
        assert "audit trail" in refused.json()["issue"][0]["diagnostics"]


def test_sync_callers_and_the_writer_keep_one_chain(env: Env) -> None:
    """Direct ``record`` calls (CLI, logins) and deferred ones from many threads interleave
    in one linear chain; ``close`` drains the queue and a later event restarts the writer."""
    trail = env.services.security.trail
    start = trail.head()[0]

    def work(n: int) -> None:
        for i in range(10):
            event = audit_event(CLERK, "read", trail.now(), status=200,
                                entities=[f"Patient/{n}-{i}"])
            if i % 2:
                trail.record(event)
            else:
                trail.submit(event).wait()
    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ticket = trail.submit(audit_event(CLERK, "read", trail.now(), status=200))
    trail.close()
    assert ticket.done and ticket.seq == start + 61
    assert trail.record(audit_event(CLERK, "read", trail.now(), status=200)) == start + 62
    assert trail.verify() == (start + 62, None)


def test_batch_events_keep_processing_order(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch whose refused entry is queued for the writer and whose write entry appends
    its event inside its own transaction: the trail still lists them in processing order
    (the write waits for the queued event first), however slow the writer is."""
    slow_groups(env, monkeypatch)
    clerk = bearer(env.token(role="records_clerk", scope="user/*.cruds"))
    start = env.services.security.trail.head()[0]
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "DELETE", "url": "Observation/nothing"}},
        {"resource": {"resourceType": "Patient", "gender": "male"},
         "request": {"method": "POST", "url": "Patient"}}]}
    answered = env.client.post("/fhir", headers=clerk, json=batch)
    assert answered.status_code == 200, answered.text
    events = [e for _, e in env.services.security.trail.events(after=start)]
    assert [(e["subtype"][0]["code"], e["outcome"]) for e in events] == [
        ("delete", "4"), ("create", "0"), ("batch", "0")]
    assert env.services.security.trail.verify()[1] is None


def test_a_committed_group_wakes_its_event_loop_once(env: Env) -> None:
    """The requests awaiting one group commit on one event loop are settled with one
    hand-over to that loop, not one per request (each wakes the loop)."""
    trail = env.services.security.trail
    trail.close()

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        handovers: list[Any] = []
        handover = loop.call_soon_threadsafe

        def counting(callback: Any, *args: Any) -> Any:
            handovers.append(callback)
            return handover(callback, *args)
        loop.call_soon_threadsafe = counting  # type: ignore[method-assign]
        trail._writer = threading.current_thread()  # hold the writer back: one group
        tickets = [trail.submit(audit_event(CLERK, "read", trail.now(), status=200))
                   for _ in range(8)]
        waiting = [asyncio.ensure_future(t.wait_async()) for t in tickets]
        await asyncio.sleep(0)  # every request now awaits its ticket
        trail._writer = threading.Thread(target=trail._run, daemon=True)
        trail._writer.start()
        seqs = await asyncio.gather(*waiting)
        assert len(handovers) == 1
        return seqs

    seqs = asyncio.run(main())
    trail.close()  # stops the writer started above
    assert seqs == list(range(seqs[0], seqs[0] + 8))
    assert trail.verify()[1] is None
