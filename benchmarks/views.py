"""SQL on FHIR view materialisation: compiled DuckDB beside pure Python and hand-written SQL.

Workload: N generated resources (``medarchive.demo.generate_ndjson``; about 70% are
Observations) in one NDJSON file, and the issue's "typical flat view": Observation with
subject, code, value, unit and time. Every DuckDB figure writes its result to a table in a
DuckDB file. Two ways to use DuckDB are measured, because they answer different questions:

From the NDJSON file (a Bulk Data export) to the view's table, one query each:
- ``duckdb_ndjson``: the compiled view (``materialize_ndjson``);
- ``duckdb_ndjson_memory``: the same into an in-memory DuckDB database, which is the fair
  match for ``python`` (whose rows stay in memory too);
- ``handwritten_ndjson``: what a DuckDB user writes by hand for the same columns (``->>``
  operators over ``read_ndjson_objects``);
- ``handwritten_typed_ndjson``: the other hand-written form, ``read_json`` with declared
  struct columns (the fastest way DuckDB offers; it needs the schema spelled out).

In the warehouse (resources loaded once into a DuckDB table, ``load_seconds``; each view is
then one query over it, which is how ``warehouse build`` uses the engine):
- ``duckdb_table``: the compiled view (``create_view_table``);
- ``handwritten_table``: the hand-written ``->>`` query over the same table.

And ``python``: the reference evaluator over the parsed NDJSON lines, rows kept in memory;
with ``--spark``, ``spark``: the compiled Spark SQL in local mode over the NDJSON file,
written as Parquet (the JVM start-up is not counted).

Prints one JSON object. The issue's targets (2-core machine, 1 million resources): DuckDB under
10 s, at least 10x faster than Python, within 3x of the hand-written query.

    python benchmarks/views.py [--resources 300000] [--skip-python] [--spark] [--ndjson FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from medarchive.analytics import compile_view, duckdb_engine, materialize_ndjson, run_view
from medarchive.analytics.duckdb_engine import connect

VIEW: dict[str, Any] = {
    "resourceType": "ViewDefinition",
    "name": "observation_flat",
    "resource": "Observation",
    "select": [{"column": [
        {"name": "id", "path": "id", "type": "id"},
        {"name": "subject", "path": "subject.reference", "type": "string"},
        {"name": "code", "path": "code.coding.first().code", "type": "code"},
        {"name": "value", "path": "value.ofType(Quantity).value", "type": "decimal"},
        {"name": "unit", "path": "value.ofType(Quantity).code", "type": "code"},
        {"name": "time", "path": "effective.ofType(dateTime)", "type": "dateTime"},
    ]}],
}

HANDWRITTEN = """
CREATE OR REPLACE TABLE {table} AS
SELECT json ->> '$.id' AS id,
       json ->> '$.subject.reference' AS subject,
       json ->> '$.code.coding[0].code' AS code,
       CAST(json ->> '$.valueQuantity.value' AS DOUBLE) AS value,
       json ->> '$.valueQuantity.code' AS unit,
       json ->> '$.effectiveDateTime' AS time
FROM read_ndjson_objects('{path}')
WHERE json ->> '$.resourceType' = 'Observation'
"""

HANDWRITTEN_TABLE = """
CREATE OR REPLACE TABLE {table} AS
SELECT resource ->> '$.id' AS id,
       resource ->> '$.subject.reference' AS subject,
       resource ->> '$.code.coding[0].code' AS code,
       CAST(resource ->> '$.valueQuantity.value' AS DOUBLE) AS value,
       resource ->> '$.valueQuantity.code' AS unit,
       resource ->> '$.effectiveDateTime' AS time
FROM resources
WHERE resource_type = 'Observation'
"""

HANDWRITTEN_TYPED = """
CREATE OR REPLACE TABLE {table} AS
SELECT id, subject.reference AS subject, code.coding[1].code AS code,
       valueQuantity.value AS value, valueQuantity.code AS unit, effectiveDateTime AS time
FROM read_json('{path}', format = 'newline_delimited', ignore_errors = true, columns = {{
    resourceType: 'VARCHAR', id: 'VARCHAR', subject: 'STRUCT(reference VARCHAR)',
    code: 'STRUCT(coding STRUCT(code VARCHAR)[])',
    valueQuantity: 'STRUCT(value DOUBLE, code VARCHAR)', effectiveDateTime: 'VARCHAR'}})
WHERE resourceType = 'Observation'
"""


def generate(path: Path, target: int) -> dict[str, int]:
    """Write about ``target`` demo resources to ``path`` as NDJSON; returns counts by type."""
    from medarchive.demo import generate_ndjson

    counts: dict[str, int] = {}
    written = 0
    patient = 0
    with path.open("wb") as out:
        while written < target:
            batch = max(1, (target - written) // 250)
            for resource in generate_ndjson(batch, seed=patient + 1, reference=patient == 0):
                out.write(orjson.dumps(resource) + b"\n")
                counts[resource["resourceType"]] = counts.get(resource["resourceType"], 0) + 1
                written += 1
                if written >= target:
                    break
            patient += batch
    return counts


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def run_python(path: Path) -> tuple[float, int]:
    def work() -> int:
        with path.open("rb") as lines:
            return len(run_view(VIEW, (orjson.loads(line) for line in lines), "python"))
    return timed(work)


def run_compiled(path: Path, folder: Path) -> tuple[float, int]:
    return timed(lambda: materialize_ndjson(VIEW, [path], folder / "ndjson.duckdb",
                                            "observation_flat"))


def run_compiled_in_memory(path: Path) -> tuple[float, int]:
    def work() -> int:
        con = connect()
        try:
            return duckdb_engine.create_view_table_ndjson(con, VIEW, [path], "observation_flat")
        finally:
            con.close()
    return timed(work)


def run_spark(path: Path, folder: Path) -> tuple[float, int]:
    from medarchive.analytics import spark_engine

    session = spark_engine.session()
    spark_engine.ndjson_dataframe(session, [str(path)]).createOrReplaceTempView("bench_res")
    compiled = compile_view(VIEW, "spark", source="bench_res")

    def work() -> int:
        out = str(folder / "spark.parquet")
        session.sql(compiled.sql).write.mode("overwrite").parquet(out)
        return int(session.read.parquet(out).count())
    return timed(work)


def run_sql(database: Path, sql: str, table: str) -> tuple[float, int]:
    def work() -> int:
        con = connect(database)
        try:
            con.execute(sql.format(table=table))
            row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
            return int(row[0]) if row else 0
        finally:
            con.close()
    return timed(work)


def load_warehouse(path: Path, database: Path) -> tuple[float, int]:
    def work() -> int:
        con = connect(database)
        try:
            duckdb_engine.create_table(con)
            return duckdb_engine.load_ndjson(con, [path])
        finally:
            con.close()
    return timed(work)


def run_warehouse_view(database: Path) -> tuple[float, int]:
    def work() -> int:
        con = connect(database)
        try:
            return duckdb_engine.create_view_table(con, VIEW, "observation_flat")
        finally:
            con.close()
    return timed(work)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=300_000)
    parser.add_argument("--skip-python", action="store_true",
                        help="skip the (slow) pure-Python evaluator")
    parser.add_argument("--spark", action="store_true",
                        help="also time the Spark engine (local mode)")
    parser.add_argument("--ndjson", type=Path, default=None,
                        help="reuse this NDJSON file instead of generating one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medarchive-bench-views-") as tmp:
        folder = Path(tmp)
        path = args.ndjson or folder / "resources.ndjson"
        gen_seconds, counts = (0.0, _counts(path)) if args.ndjson else timed(
            lambda: generate(path, args.resources))
        result: dict[str, Any] = {
            "benchmark": "views",
            "view": VIEW["name"],
            "resources": sum(counts.values()) if counts else None,
            "observations": counts.get("Observation"),
            "ndjson_bytes": path.stat().st_size,
            "generate_seconds": round(gen_seconds, 2),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "duckdb": _duckdb_version()},
            "sql": compile_view(VIEW, "duckdb").sql,
        }
        quoted = str(path).replace("'", "''")
        warehouse = folder / "warehouse.duckdb"
        runs = {
            "duckdb_ndjson": lambda: run_compiled(path, folder),
            "duckdb_ndjson_memory": lambda: run_compiled_in_memory(path),
            "handwritten_ndjson": lambda: run_sql(
                folder / "hand.duckdb", HANDWRITTEN.replace("{path}", quoted), "hand"),
            "handwritten_typed_ndjson": lambda: run_sql(
                folder / "typed.duckdb", HANDWRITTEN_TYPED.replace("{path}", quoted), "typed"),
            "load_seconds": lambda: load_warehouse(path, warehouse),
            "duckdb_table": lambda: run_warehouse_view(warehouse),
            "handwritten_table": lambda: run_sql(warehouse, HANDWRITTEN_TABLE, "hand"),
        }
        if not args.skip_python:
            runs["python"] = lambda: run_python(path)
        if args.spark:
            runs["spark"] = lambda: run_spark(path, folder)
        _warm(path)
        for name, run in runs.items():
            # DuckDB runs are short and noisy: the median of three; Python runs once.
            once = name in ("python", "load_seconds", "spark")
            trials = [run() for _ in range(1 if once else 3)]
            seconds, rows = sorted(trials)[len(trials) // 2]
            result[name] = {"seconds": round(seconds, 3), "rows": rows}
        seconds = {k: v["seconds"] for k, v in result.items()
                   if isinstance(v, dict) and "seconds" in v}
        ratios = {
            "ndjson_vs_handwritten": seconds["duckdb_ndjson"] / seconds["handwritten_ndjson"],
            "ndjson_vs_handwritten_typed": (seconds["duckdb_ndjson"]
                                            / seconds["handwritten_typed_ndjson"]),
            "table_vs_handwritten_table": (seconds["duckdb_table"]
                                           / seconds["handwritten_table"]),
        }
        if "python" in seconds:
            ratios["python_vs_duckdb_ndjson"] = seconds["python"] / seconds["duckdb_ndjson"]
            ratios["python_vs_duckdb_ndjson_memory"] = (seconds["python"]
                                                        / seconds["duckdb_ndjson_memory"])
            ratios["python_vs_duckdb_table"] = seconds["python"] / seconds["duckdb_table"]
        result["ratios"] = {k: round(v, 2) for k, v in ratios.items()}
        print(json.dumps(result, indent=2))


def _counts(path: Path) -> dict[str, int]:
    con = connect()
    try:
        rows = con.execute(
            "SELECT resource_type, count(*) FROM (SELECT json_extract_string(resource, "
            f"'$.resourceType') AS resource_type FROM {duckdb_engine.ndjson_source([path])}) "
            "GROUP BY ALL").fetchall()
        return {str(kind): int(n) for kind, n in rows}
    finally:
        con.close()


def _warm(path: Path) -> None:
    """Flush the freshly written file to disk and read it once, so that no run pays for
    write-back or a cold cache that the others do not."""
    os.sync()
    with path.open("rb") as data:
        while data.read(1 << 24):
            pass


def _duckdb_version() -> str:
    import duckdb
    return str(duckdb.__version__)


if __name__ == "__main__":
    main()
