"""``medarchive db reindex``: rebuilds a lost search index, resumes an interrupted job and only
reruns a finished one with --restart (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner, Result

from medarchive.cli.main import app
from medarchive.fhir.search.parse import parse_search
from medarchive.store import open_store
from medarchive.store.base import Change, ReindexProgress
from medarchive.store.sql.store import SqlStore

BACKENDS = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
WHEN = datetime(2024, 1, 1, tzinfo=UTC)


def run(database_url: str, *args: str) -> Result:
    return CliRunner().invoke(app, ["--database-url", database_url, "db", "reindex", *args])


def patients(store: Any, count: int) -> None:
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": f"p{n}", "gender": "female",
         "meta": {"versionId": "1"}} for n in range(count)]
    store.write([Change("Patient", r["id"], 1, 0, WHEN, False, orjson.dumps(r), r)
                 for r in resources])


def found(store: Any, spec: Any) -> int:
    query = parse_search(spec, "Patient", [("gender", "female")], default_count=100,
                         max_count=100).query
    return int(store.count(query))


@BACKENDS
def test_reindex_rebuilds_a_lost_index(database_url: str, spec: Any, indexer: Any) -> None:
    store = open_store(database_url, indexer)
    try:
        assert isinstance(store, SqlStore)
        patients(store, 7)
        with store.db.writing() as cur:
            cur.execute("DELETE FROM idx_token")
        assert found(store, spec) == 0
        result = run(database_url, "--batch", "3")
        assert result.exit_code == 0, result.output
        assert "reindexed 7 resources" in result.output
        assert found(store, spec) == 7
        again = run(database_url)
        assert again.exit_code == 0 and "already finished" in again.output
        restarted = run(database_url, "--restart")
        assert restarted.exit_code == 0 and "reindexed 7 resources" in restarted.output
    finally:
        store.close()


@BACKENDS
def test_an_interrupted_job_resumes(database_url: str, spec: Any, indexer: Any) -> None:
    store = open_store(database_url, indexer)
    try:
        patients(store, 5)

        def stop(state: ReindexProgress) -> None:
            raise KeyboardInterrupt  # the operator pressed Ctrl-C after the first batch
        with pytest.raises(KeyboardInterrupt):
            store.reindex(job="nightly", batch=2, progress=stop)
        assert isinstance(store, SqlStore)
        with store.db.writing() as cur:  # so what the resumed run re-extracts shows
            cur.execute("DELETE FROM idx_token")
        resumed = run(database_url, "--job", "nightly", "--batch", "2")
        assert resumed.exit_code == 0, resumed.output
        assert "reindexed 5 resources" in resumed.output  # 2 before, 3 now: the job's total
        assert found(store, spec) == 3  # only the batches after the committed one ran
    finally:
        store.close()


def test_memory_database_is_refused() -> None:
    result = CliRunner().invoke(app, ["--database-url", "memory://", "db", "reindex"])
    assert result.exit_code == 1 and "SQLite or PostgreSQL" in result.output


@BACKENDS
def test_reindex_of_one_type(database_url: str, spec: Any, indexer: Any) -> None:
    store = open_store(database_url, indexer)
    try:
        assert isinstance(store, SqlStore)
        patients(store, 4)
        doctor = {"resourceType": "Practitioner", "id": "d1", "gender": "female"}
        store.write([Change("Practitioner", "d1", 1, 0, WHEN, False, orjson.dumps(doctor),
                            doctor)])
        with store.db.writing() as cur:
            cur.execute("DELETE FROM idx_token")
        result = run(database_url, "--type", "Practitioner", "--batch", "1")
        assert result.exit_code == 0, result.output
        assert "reindexed 1 resources (job 'reindex:Practitioner')" in result.output
        assert "Practitioner" in result.output  # the progress line names the type
        assert found(store, spec) == 0  # the Patients were left alone
        again = run(database_url, "--type", "Practitioner")
        assert "already finished" in again.output
        everything = run(database_url, "--batch", "2")  # the all-types job is separate
        assert "reindexed 5 resources (job 'reindex')" in everything.output
        assert found(store, spec) == 4
    finally:
        store.close()


def test_unknown_type_is_refused(tmp_path: Path) -> None:
    result = run(f"sqlite:///{tmp_path / 'medarchive.db'}", "--type", "Patients")
    assert result.exit_code == 1 and "unknown resource type 'Patients'" in result.output
