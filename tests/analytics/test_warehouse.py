"""The warehouse on every store backend: a full build, an incremental one (updates, deletions,
new resources; only affected views recomputed), re-reading a window harmlessly, and a failed
build leaving the previous warehouse whole. Also ``live_resources`` (current versions only)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from medarchive.analytics import warehouse
from medarchive.service.repository import Repository
from medarchive.store.base import Indexer, Store

PATIENTS = {"resourceType": "ViewDefinition", "name": "patients", "resource": "Patient",
            "select": [{"column": [{"name": "id", "path": "id"},
                                   {"name": "gender", "path": "gender"}]}]}
OBSERVATIONS = {"resourceType": "ViewDefinition", "name": "observations",
                "resource": "Observation",
                "select": [{"column": [{"name": "id", "path": "id"},
                                       {"name": "subject",
                                        "path": "subject.getReferenceKey(Patient)"}]}]}
VIEWS = {"patients": PATIENTS, "observations": OBSERVATIONS}


@pytest.fixture
def repository(store_factory: Callable[[Indexer], Store], indexer: Indexer,
               spec: Any) -> Iterator[Repository]:
    ids = itertools.count(1)
    ticks = itertools.count()
    start = datetime(2024, 1, 1, tzinfo=UTC)
    yield Repository(store_factory(indexer), spec, new_id=lambda: f"id-{next(ids)}",
                     now=lambda: start + timedelta(seconds=next(ticks)))


def put(repository: Repository, resource: dict[str, Any]) -> None:
    repository.update(resource, resource["resourceType"], resource["id"])


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    return warehouse.query(path, sql)[1]


def test_full_then_incremental(repository: Repository, tmp_path: Path) -> None:
    for pid in ("a", "b", "c"):
        put(repository, {"resourceType": "Patient", "id": pid, "gender": "female"})
    put(repository, {"resourceType": "Observation", "id": "o1", "status": "final",
                     "code": {"text": "x"}, "subject": {"reference": "Patient/a"}})
    path = tmp_path / "w.duckdb"
    first = warehouse.build(repository, path, VIEWS)
    assert first.views == {"patients": 3, "observations": 1} and first.resources == 4
    put(repository, {"resourceType": "Patient", "id": "a", "gender": "male"})
    repository.delete("Patient", "b")
    put(repository, {"resourceType": "Patient", "id": "d", "gender": "other"})
    second = warehouse.build(repository, path, VIEWS)
    assert second.changes == 3 and second.from_seq == first.to_seq
    assert second.views == {"patients": 3} and second.unchanged == ["observations"]
    assert rows(path, "SELECT id, gender FROM patients ORDER BY id") == [
        ("a", "male"), ("c", "female"), ("d", "other")]
    again = warehouse.build(repository, path, VIEWS, window=100)  # re-reads everything
    assert again.from_seq == 0 and again.resources == 4
    assert rows(path, "SELECT count(*) FROM patients") == [(3,)]
    assert rows(path, "SELECT subject FROM observations") == [("Patient/a",)]


def test_failed_build_changes_nothing(repository: Repository, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    put(repository, {"resourceType": "Patient", "id": "a", "gender": "female"})
    path = tmp_path / "w.duckdb"
    warehouse.build(repository, path, VIEWS)
    put(repository, {"resourceType": "Patient", "id": "a", "gender": "male"})

    def broken(*args: Any) -> None:
        raise OSError("disk full")
    monkeypatch.setattr(warehouse, "_apply", broken)
    with pytest.raises(OSError):
        warehouse.build(repository, path, VIEWS)
    assert rows(path, "SELECT gender FROM patients") == [("female",)]
    monkeypatch.undo()
    assert warehouse.build(repository, path, VIEWS).changes == 1
    assert rows(path, "SELECT gender FROM patients") == [("male",)]


def test_live_resources_are_current_versions(repository: Repository) -> None:
    put(repository, {"resourceType": "Patient", "id": "a", "gender": "female"})
    put(repository, {"resourceType": "Patient", "id": "a", "gender": "male"})
    put(repository, {"resourceType": "Patient", "id": "b", "gender": "male"})
    repository.delete("Patient", "b")
    put(repository, {"resourceType": "Practitioner", "id": "p"})
    found = [v.resource() for v in warehouse.live_resources(repository, ["Patient"])]
    assert [(r["id"], r["gender"]) for r in found] == [("a", "male")]


def test_query_without_warehouse(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        warehouse.query(tmp_path / "none.duckdb", "SELECT 1")
    path = tmp_path / "w.duckdb"
    duckdb.connect(str(path)).close()
    with pytest.raises(duckdb.Error):
        warehouse.query(path, "SELEC 1")


def test_changed_view_definition_is_recomputed(repository: Repository,
                                               tmp_path: Path) -> None:
    put(repository, {"resourceType": "Patient", "id": "a", "gender": "female"})
    path = tmp_path / "w.duckdb"
    warehouse.build(repository, path, VIEWS)
    narrower = {**PATIENTS, "select": [{"column": [{"name": "id", "path": "id"}]}]}
    again = warehouse.build(repository, path, {**VIEWS, "patients": narrower})
    assert again.views == {"patients": 1} and again.unchanged == ["observations"]
    assert warehouse.query(path, "SELECT * FROM patients")[0] == ["id"]


def parquet(folder: Path, view: str) -> list[tuple[Any, ...]]:
    return duckdb.sql(f"SELECT * FROM '{folder / view}/*.parquet' ORDER BY 1").fetchall()


@pytest.fixture
def memory_repository(spec: Any, indexer: Indexer) -> Repository:
    """Spark is slow to start a job: its tests run on one backend (the change feed they
    read is held to one contract on all of them, and the DuckDB tests run on each)."""
    from medarchive.store.memory import MemoryStore
    ticks = itertools.count()
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return Repository(MemoryStore(indexer), spec, new_id=lambda: "x",
                      now=lambda: start + timedelta(seconds=next(ticks)))


def test_spark_full_incremental_and_failed_builds(memory_repository: Repository,
                                                  tmp_path: Path, spark: Any,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from medarchive.analytics import spark_warehouse
    repository = memory_repository
    for pid in ("a", "b", "c"):
        put(repository, {"resourceType": "Patient", "id": pid, "gender": "female"})
    folder = tmp_path / "parquet"
    first = spark_warehouse.build_spark(repository, folder, VIEWS, spark)
    assert first.views == {"patients": 3, "observations": 0} and first.resources == 3
    put(repository, {"resourceType": "Patient", "id": "a", "gender": "male"})
    repository.delete("Patient", "b")
    put(repository, {"resourceType": "Patient", "id": "d", "gender": "other"})
    second = spark_warehouse.build_spark(repository, folder, VIEWS, spark)
    assert second.changes == 3 and second.from_seq == first.to_seq
    assert second.views == {"patients": 3} and second.unchanged == ["observations"]
    assert parquet(folder, "patients") == [("a", "male"), ("c", "female"), ("d", "other")]

    put(repository, {"resourceType": "Observation", "id": "o1", "status": "final",
                     "code": {"text": "x"}, "subject": {"reference": "Patient/a"}})

    def broken(*args: Any) -> None:
        raise OSError("disk full")
    monkeypatch.setattr(spark_warehouse, "_publish", broken)
    with pytest.raises(OSError):
        spark_warehouse.build_spark(repository, folder, VIEWS, spark)
    assert parquet(folder, "observations") == []  # the failed build changed nothing
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]
    monkeypatch.undo()

    again = spark_warehouse.build_spark(repository, folder, VIEWS, spark, window=100)
    assert again.from_seq == 0 and again.resources == 4  # re-read everything, harmlessly
    assert again.views == {"patients": 3, "observations": 1}
    assert parquet(folder, "observations") == [("o1", "Patient/a")]
    assert sorted(p.name for p in folder.iterdir()) == [
        "_resources", "_state.json", "observations", "patients"]
