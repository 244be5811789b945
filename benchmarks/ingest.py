"""Transaction-Bundle ingestion throughput, beside the physical limit of the same database.

Workloads: the 30 Synthea patient Bundles of ../shared/conformance/synthea, and N generated
demo patients. Each Bundle goes through the full service path (validation, reference
resolution, versioning, indexing, one atomic transaction). The reference inserts the same JSON
rows (one row per resource, same batching, one transaction per Bundle) into a bare table of the
same database with executemany: what the database alone can do. Prints JSON, one object per
backend and workload.

    python benchmarks/ingest.py [--backend sqlite|postgresql|all] [--generated 200]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from medarchive.app import build_services
from medarchive.demo import generate, reference_bundle
from medarchive.settings import load_settings
from medarchive.store.sql.database import open_database

ROOT = Path(__file__).resolve().parents[1]
SYNTHEA = ROOT.parent / "shared" / "conformance" / "synthea" / "bundles"
PG = "postgresql://postgres@127.0.0.1:5432/test"


def fresh_url(backend: str, folder: Path) -> tuple[str, Any]:
    if backend == "sqlite":
        return f"sqlite:///{folder / f'{uuid.uuid4().hex}.db'}", None
    import psycopg
    schema = "bench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return f"{PG}?options=-csearch_path%3D{schema}", schema


def drop(schema: str | None) -> None:
    if schema:
        import psycopg
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def ingest(url: str, bundles: list[dict[str, Any]], setup: list[dict[str, Any]]) -> float:
    services = build_services(load_settings({"database_url": url}, environ={}))
    try:
        for bundle in setup:
            services.submit(bundle, None)
        start = time.perf_counter()
        for bundle in bundles:
            services.submit(bundle, None)
        return time.perf_counter() - start
    finally:
        services.close()


def raw_insert(url: str, bundles: list[dict[str, Any]]) -> float:
    db = open_database(url)
    try:
        with db.writing() as cur:
            cur.execute("CREATE TABLE raw_rows (id TEXT PRIMARY KEY, res_type TEXT NOT NULL, "
                        f"body {'BYTEA' if db.dialect == 'postgresql' else 'BLOB'} NOT NULL)")
        rows = [[(uuid.uuid4().hex, e["resource"]["resourceType"], orjson.dumps(e["resource"]))
                 for e in bundle["entry"]] for bundle in bundles]
        insert = db.sql("INSERT INTO raw_rows (id, res_type, body) VALUES (?, ?, ?)")
        start = time.perf_counter()
        for batch in rows:
            with db.writing() as cur:
                cur.executemany(insert, batch)
        return time.perf_counter() - start
    finally:
        db.close()


def run(backend: str, name: str, bundles: list[dict[str, Any]],
        setup: list[dict[str, Any]]) -> dict[str, Any]:
    resources = sum(len(b["entry"]) for b in bundles)
    with tempfile.TemporaryDirectory() as tmp:
        url, schema = fresh_url(backend, Path(tmp))
        try:
            seconds = ingest(url, bundles, setup)
        finally:
            drop(schema)
        url, schema = fresh_url(backend, Path(tmp))
        try:
            reference = raw_insert(url, bundles)
        finally:
            drop(schema)
    return {"benchmark": "ingest", "backend": backend, "workload": name, "bundles": len(bundles),
            "resources": resources, "seconds": round(seconds, 2),
            "resources_per_s": round(resources / seconds, 1),
            "reference_raw_insert_rows_per_s": round(resources / reference, 1),
            "slowdown_vs_raw_insert": round(seconds / reference, 2)}


def load(paths: Iterable[Path]) -> list[dict[str, Any]]:
    return [orjson.loads(p.read_bytes()) for p in sorted(paths)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "all"], default="all")
    parser.add_argument("--generated", type=int, default=200, help="demo patients to ingest")
    args = parser.parse_args()
    backends = ["sqlite", "postgresql"] if args.backend == "all" else [args.backend]
    synthea = load(SYNTHEA.glob("*.json")) if SYNTHEA.is_dir() else []
    generated = list(generate(args.generated, seed=1))
    results = []
    for backend in backends:
        if synthea:
            results.append(run(backend, "synthea-30", synthea, []))
        results.append(run(backend, f"generated-{args.generated}", generated,
                           [reference_bundle(1)]))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
