"""Group commit: messages queued together share one transaction, yet each keeps its own outcome.

The writer thread is held busy by a job waiting on an event, so the messages sent meanwhile are
queued and join that job's group when it is released.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from mllp_builders import Archive, adt

from medarchive.mllp.commit import GroupCommitter
from medarchive.mllp.gateway import Outcome
from medarchive.mllp.log import LogEntry
from medarchive.mllp.transaction import NoTransaction, SharedTransaction


def in_one_group(archive: Archive, messages: list[str]) -> list[Outcome]:
    """Handle ``messages`` concurrently while the writer is busy, so they join its group."""
    release, started = threading.Event(), threading.Event()
    committer = archive.gateway.committer
    blocker = committer.submit(lambda: (started.set(), release.wait(10)))
    started.wait(10)
    before = committer.groups
    with ThreadPoolExecutor(len(messages)) as pool:
        futures = []
        for text in messages:
            futures.append(pool.submit(archive.gateway.handle, text.encode()))
            while committer._queue.qsize() < len(futures):  # keep the order of the list
                threading.Event().wait(0.001)
        release.set()
        outcomes = [f.result(10) for f in futures]
    blocker.result(10)
    assert committer.groups - before == 1  # ours joined the blocker's group
    return outcomes


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_failing_message_is_rolled_back_alone(archive: Archive) -> None:
    submit = archive.gateway.submit

    def fail_after_writing(bundle: dict[str, Any], idempotency_key: str | None = None
                           ) -> dict[str, Any]:
        response = submit(bundle, idempotency_key=idempotency_key)
        if idempotency_key and idempotency_key.endswith("|G2"):
            raise OSError("disk on fire after the write")
        return response

    archive.gateway.submit = fail_after_writing
    outcomes = in_one_group(archive, [adt("G1", mrn="A1"), adt("G2", mrn="A2"),
                                      adt("G3", mrn="A3")])
    assert [o.code for o in outcomes] == ["AA", "AE", "AA"]
    stored = {v.resource()["identifier"][0]["value"]
              for v in archive.services.store.changes(0, 1000) if v.resource_type == "Patient"}
    assert stored == {"A1", "A3"}  # G2's Patient was written, then rolled back
    entries = {e.key.rsplit("|", 1)[1]: e for e in archive.log.entries()}
    assert entries["G2"].status == "dead" and "OSError" in entries["G2"].error
    assert entries["G1"].status == entries["G3"].status == "done"
    # the failed message was not recorded as applied: sent again, it is applied
    archive.gateway.submit = submit
    assert archive.gateway.handle(adt("G2", mrn="A2").encode()).duplicate is False


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_duplicate_inside_one_group_is_applied_once(archive: Archive) -> None:
    outcomes = in_one_group(archive, [adt("D1", family="First"),
                                      adt("D1", family="Second")])
    assert [(o.code, o.duplicate) for o in outcomes] == [("AA", False), ("AA", True)]
    [patient] = [v.resource() for v in archive.services.store.changes(0, 100)
                 if v.resource_type == "Patient"]
    assert patient["name"][0]["family"] == "First"


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_later_message_sees_the_earlier_one_of_its_group(archive: Archive) -> None:
    outcomes = in_one_group(archive, [adt("O1", mrn="SAME", family="One"),
                                      adt("O2", mrn="SAME", family="Two")])
    assert [o.code for o in outcomes] == ["AA", "AA"]
    assert [v for _, v in archive.versions("Patient")] == [1, 2]  # one patient, updated


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_log_failure_undoes_the_message(archive: Archive) -> None:
    record = archive.log.record

    def no_done_rows(entry: Any) -> int:
        if entry.status == "done":
            raise OSError("log table unavailable")
        return record(entry)

    archive.log.record = no_done_rows  # type: ignore[method-assign]
    outcome = archive.gateway.handle(adt("L1").encode())
    assert outcome.code == "AE"
    assert archive.services.store.changes(0, 10) == []  # resources rolled back with the row
    [dead] = archive.log.entries()
    assert dead.status == "dead" and "OSError" in dead.error


class Scope:
    """A fake transaction scope whose multi-job groups fail at commit."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self._jobs = 0

    @contextmanager
    def group(self) -> Iterator[None]:
        self._jobs = 0
        yield
        self.sizes.append(self._jobs)
        if self._jobs > 1:
            raise RuntimeError("commit refused")

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        self._jobs += 1
        yield


def test_group_that_cannot_commit_is_retried_one_by_one() -> None:
    scope = Scope()
    committer = GroupCommitter(scope, max_group=10)
    release, started = threading.Event(), threading.Event()
    runs: list[str] = []

    def job(name: str) -> Callable[[], str]:
        def run() -> str:
            runs.append(name)
            if name == "bad":
                raise ValueError("refused")
            return name
        return run

    blocker = committer.submit(lambda: (started.set(), release.wait(10)))
    started.wait(10)
    futures = [committer.submit(job(name)) for name in ("a", "bad", "c")]
    release.set()
    blocker.result(10)
    assert futures[0].result(10) == "a" and futures[2].result(10) == "c"
    with pytest.raises(ValueError, match="refused"):
        futures[1].result(10)
    committer.close()
    assert scope.sizes == [4, 1, 1, 1, 1]  # the blocker's group, then each alone
    assert runs == ["a", "bad", "c", "a", "bad", "c"]


class Sizes:
    """A transaction scope that records how many jobs each group ran."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    @contextmanager
    def group(self) -> Iterator[None]:
        self.sizes.append(0)
        yield

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        self.sizes[-1] += 1
        yield


def test_jobs_queued_while_a_group_runs_join_it_up_to_max_group() -> None:
    scope = Sizes()
    committer = GroupCommitter(scope, max_group=3)
    release, started = threading.Event(), threading.Event()
    blocker = committer.submit(lambda: (started.set(), release.wait(10)))
    started.wait(10)
    futures = [committer.submit(lambda n=n: n) for n in range(5)]
    release.set()
    assert [f.result(10) for f in futures] == list(range(5))
    blocker.result(10)
    lone = committer.submit(lambda: "alone")
    assert lone.result(10) == "alone"
    committer.close()
    assert scope.sizes == [3, 3, 1]  # blocker + 2, then the other 3; a lone job is not held


@settings(max_examples=40, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=12), st.integers(1, 5), st.booleans())
def test_every_job_gets_its_own_outcome_in_order(fails: list[bool], max_group: int,
                                                 groups_fail: bool) -> None:
    scope = Scope() if groups_fail else NoTransaction()
    committer = GroupCommitter(scope, max_group=max_group)
    release, started = threading.Event(), threading.Event()
    first_runs: list[int] = []

    def job(number: int) -> Callable[[], int]:
        def run() -> int:
            if number not in first_runs:
                first_runs.append(number)
            if fails[number]:
                raise ValueError(number)
            return number
        return run

    committer.submit(lambda: (started.set(), release.wait(10)))
    started.wait(10)
    futures = [committer.submit(job(n)) for n in range(len(fails))]
    release.set()
    for number, future in enumerate(futures):
        error = future.exception(10)
        if fails[number]:
            assert isinstance(error, ValueError) and error.args == (number,)
        else:
            assert error is None and future.result() == number
    committer.close()
    assert first_runs == list(range(len(fails)))


class Events:
    """A transaction scope that records what happens to each savepoint."""

    def __init__(self) -> None:
        self.events: list[str] = []

    @contextmanager
    def group(self) -> Iterator[None]:
        yield
        self.events.append("commit")

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        self.events.append("savepoint")
        try:
            yield
        except BaseException:
            self.events.append("rollback")
            raise
        self.events.append("release")


def test_a_failed_job_is_recovered_in_a_savepoint_of_its_own() -> None:
    scope = Events()
    committer = GroupCommitter(scope)

    def fail() -> str:
        scope.events.append("run")
        raise ValueError("refused")

    def recover(exc: Exception) -> str:
        scope.events.append("recover")
        return f"logged: {exc}"

    assert committer.submit(fail, recover).result(10) == "logged: refused"
    assert scope.events == ["savepoint", "run", "rollback", "savepoint", "recover", "release",
                            "commit"]

    def recover_fails(exc: Exception) -> str:
        raise OSError("the log is gone too")

    with pytest.raises(OSError, match="the log is gone too"):
        committer.submit(fail, recover_fails).result(10)
    assert committer.submit(lambda: "fine", recover).result(10) == "fine"
    committer.close()


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_the_log_row_needs_no_savepoint_of_its_own(archive: Archive) -> None:
    """Inside a group the log row is a plain statement of the open transaction: it commits
    with the group, and a failed message's savepoint undoes it with the rest."""
    transactions = archive.gateway.transactions
    assert isinstance(transactions, SharedTransaction)
    entry = LogEntry(0, "2024-05-01T12:00:00+00:00", "hl7:F|A|S1", "AA", "done", "", (), (),
                     "MSH|...")
    opened: list[str] = []
    savepoint = transactions.savepoint

    @contextmanager
    def counted() -> Iterator[Any]:
        opened.append("savepoint")
        with savepoint() as cursor:
            yield cursor

    transactions.savepoint = counted  # type: ignore[method-assign]
    with transactions.group():
        kept = archive.log.record(entry)
        with pytest.raises(ValueError), transactions.savepoint():
            undone = archive.log.record(replace(entry, key="hl7:F|A|S2"))
            raise ValueError("the message failed after its log row")
    assert opened == ["savepoint"]  # only the message's own
    assert archive.log.get(kept) is not None and archive.log.get(undone) is None


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_savepoint_journals_are_kept_in_memory(archive: Archive) -> None:
    """A group's SQLite connection keeps its savepoints' statement journals in memory, also
    when the connection opened its temporary storage before its first group (SQLite refuses
    to change ``temp_store`` inside a transaction then)."""
    transactions = archive.gateway.transactions
    assert isinstance(transactions, SharedTransaction)
    with transactions.reading() as cursor:  # a sort through a temporary b-tree
        cursor.execute("SELECT DISTINCT res_type FROM resource ORDER BY random()").fetchall()
    with transactions.group(), transactions.savepoint() as cursor:
        assert cursor.execute("PRAGMA temp_store").fetchone()[0] == 2  # MEMORY
