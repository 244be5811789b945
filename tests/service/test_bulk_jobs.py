"""The Bulk Data job table on every backend: claiming with leases, a dead runner's job claimed
again, saving refused after a cancel, cancel of finished jobs forgets them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from medarchive.service.bulk.jobs import Job, Jobs, jobs_for
from medarchive.store.base import Store


def job(id: str, created: int) -> Job:
    return Job(id, "export", "accepted", "$export", {"types": ["Patient"]}, "user:u",
               {"kind": "user", "id": "u"}, 5, 9, created=created, updated=created)


def table(store_factory: Any, indexer: Any) -> Jobs:
    store: Store = store_factory(indexer)
    return jobs_for(store)


def test_claim_lease_and_reclaim(store_factory: Any, indexer: Any) -> None:
    jobs = table(store_factory, indexer)
    jobs.add(job("b", 2))
    jobs.add(job("a", 1))
    first = jobs.claim(now=100, lease=50)
    assert first is not None and first.id == "a" and first.status == "in-progress"
    assert first.params == {"types": ["Patient"]} and first.actor["id"] == "u"
    second = jobs.claim(now=100, lease=50)
    assert second is not None and second.id == "b"
    assert jobs.claim(now=120, lease=50) is None  # both leased
    assert jobs.save(first, now=140, lease=50)  # the runner of "a" renews its lease
    again = jobs.claim(now=160, lease=50)  # "b"'s runner died: its lease ran out at 150
    assert again is not None and again.id == "b"


def test_cancel_stops_saves_and_forgets_finished(store_factory: Any, indexer: Any) -> None:
    jobs = table(store_factory, indexer)
    jobs.add(job("a", 1))
    running = jobs.claim(now=10, lease=5)
    assert running is not None
    assert jobs.cancel("a", now=11) is not None
    assert not jobs.save(running, now=12, lease=5)
    stored = jobs.get("a")
    assert stored is not None and stored.status == "cancelled"
    assert jobs.claim(now=100, lease=5) is None
    jobs.add(job("b", 2))
    done = jobs.claim(now=100, lease=5)
    assert done is not None
    assert jobs.save(replace(done, status="completed",
                             output=({"type": "Patient", "name": "P", "count": 1},)),
                     now=101, lease=0)
    completed = jobs.get("b")
    assert completed is not None and completed.output[0]["count"] == 1
    assert jobs.cancel("b", now=102) is not None
    assert jobs.get("b") is None and jobs.cancel("nope", now=103) is None
