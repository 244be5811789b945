"""run_view and the DuckDB/Spark plumbing: loading, materialising, errors, large inputs."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from medarchive.analytics import (
    ViewError,
    duckdb_engine,
    materialize,
    materialize_ndjson,
    run_view,
    spark_engine,
)

VIEW = {"resource": "Patient", "select": [
    {"column": [{"name": "id", "path": "id"}, {"name": "n", "path": "name.count()"}]},
    {"forEachOrNull": "name", "column": [{"name": "family", "path": "family"}]}]}
PATIENTS = [{"resourceType": "Patient", "id": f"p{i}", "name": [{"family": f"F{i}"}] * (i % 3)}
            for i in range(7)] + [{"resourceType": "Observation", "id": "o1"}]


def _sorted(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return sorted(tuple(r.values()) for r in rows)


def test_unknown_engine_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown engine 'oracle'"):
        run_view(VIEW, [], "oracle")


def test_engines_agree_and_accept_generators() -> None:
    expected = run_view(VIEW, iter(PATIENTS), "python")
    assert len(expected) == 1 + 1 + 2 + 1 + 1 + 2 + 1   # forEachOrNull: 0 names -> 1 row
    assert _sorted(run_view(VIEW, iter(PATIENTS), "duckdb")) == _sorted(expected)


def test_decimals_are_floats_on_every_engine() -> None:
    obs = [{"resourceType": "Observation", "id": "o", "status": "final", "code": {},
            "valueQuantity": {"value": Decimal("1.25")}}]
    view = {"resource": "Observation", "select": [{"column": [
        {"name": "v", "path": "value.ofType(Quantity).value"}]}]}
    assert run_view(view, obs, "python") == [{"v": 1.25}]
    assert run_view(view, obs, "duckdb") == [{"v": 1.25}]


def test_duckdb_runtime_failure_is_a_view_error() -> None:
    view = {"resource": "Patient", "select": [{"column": [{"name": "f", "path": "name.family"}]}]}
    with pytest.raises(ViewError, match="not a collection"):
        run_view(view, PATIENTS, "duckdb")


def test_materialize_streams_in_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(duckdb_engine, "CHUNK", 3)
    database = tmp_path / "views.duckdb"
    assert materialize(VIEW, iter(PATIENTS), database, "patients") == 9
    assert materialize(VIEW, iter(PATIENTS[:1]), database, "patients") == 1   # replaced
    con = duckdb_engine.connect(database)
    try:
        assert con.execute("SELECT id, n, family FROM patients").fetchall() == [("p0", 0, None)]
        tables = {row[0] for row in con.execute("SHOW TABLES").fetchall()}
        assert tables == {"patients"}           # the staging table was temporary
    finally:
        con.close()


def test_materialize_ndjson_and_the_warehouse_path(tmp_path: Path) -> None:
    path = tmp_path / "Patient.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in PATIENTS) + b"\n")
    expected = _sorted(run_view(VIEW, PATIENTS, "python"))
    database = tmp_path / "a.duckdb"
    assert materialize_ndjson(VIEW, [path], database, "direct") == len(expected)
    con = duckdb_engine.connect(database)
    try:
        duckdb_engine.create_table(con)
        assert duckdb_engine.load_ndjson(con, [path]) == len(PATIENTS)
        assert duckdb_engine.create_view_table(con, VIEW, "loaded") == len(expected)
        for table in ("direct", "loaded"):
            got = con.execute(f"SELECT id, n, family FROM {table}").fetchall()
            assert sorted(got, key=repr) == sorted(expected, key=repr)
    finally:
        con.close()


def test_spark_engine_inline_and_file_inputs(spark: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = _sorted(run_view(VIEW, PATIENTS, "python"))
    assert _sorted(run_view(VIEW, PATIENTS, "spark", spark=spark)) == expected
    monkeypatch.setattr(spark_engine, "INLINE_LIMIT", 2)   # force the temporary NDJSON file
    assert _sorted(run_view(VIEW, PATIENTS, "spark", spark=spark)) == expected
    assert run_view(VIEW, [], "spark", spark=spark) == []


def test_spark_runtime_failure_is_a_view_error(spark: Any) -> None:
    view = {"resource": "Patient", "select": [{"column": [{"name": "f", "path": "name.family"}]}]}
    with pytest.raises(ViewError, match="Spark could not run the view"):
        run_view(view, PATIENTS, "spark", spark=spark)
