"""Bulk Data throughput: NDJSON import (fast path vs transaction Bundles vs raw insert) and
``$export`` streaming, all in one run on one database backend.

The same demo resources (``medarchive.demo.generate_ndjson``) are loaded three ways into fresh
databases: through the fast path (``service.bulk.imports.BulkImport``: validation, indexing and
versioning kept, ``--processes`` worker processes), as transaction Bundles of 500 entries
through the full service path (``service.ingest.import_file``, what ``medarchive import`` does),
and as bare rows inserted with ``executemany`` into a table of the same database (the limit).
Then the fast-path store is exported with the ``$export`` stream (``service.bulk.export``,
every type, written to NDJSON files). Prints one JSON object with the figures and ratios.

    python benchmarks/bulk.py [--patients 100] [--backend sqlite|postgresql] [--processes 2]
        [--skip-bundles] [--phases]
    python benchmarks/bulk.py --export-only --resources 1000000 [--backend ...]
        [--skip-warehouse]

``--export-only`` measures the export alone at scale: N demo resources are written straight
into a fresh store through ``Store.write`` (5,000 per transaction, search index left empty: an
unfiltered system export never reads it), then exported; the reference is the bare scan of
the same rows (``SELECT body FROM resource_version``) written to one file. Then the shipped
views are built into a DuckDB warehouse from the store, 1,000 resources are updated, and the
warehouse is built again (incrementally).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource as rusage
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from ingest import drop, fresh_url  # the sibling benchmark's scratch databases

from medarchive.app import build_services
from medarchive.demo.generate import generate_ndjson
from medarchive.service.bulk.export import stream
from medarchive.service.bulk.imports import BulkImport, file_source, ndjson_lines
from medarchive.service.ingest import digest, import_file
from medarchive.settings import load_settings
from medarchive.store.sql.database import open_database


def services_for(url: str) -> Any:
    """Services as ``medarchive import`` builds them (with or without ``--bulk``), which then
    exempts what it loaded from garbage collection (``gc.freeze``)."""
    services = build_services(load_settings({"database_url": url, "auth": "off"}, environ={}))
    gc.freeze()
    return services


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the import's worker pool)."""
    own, children = rusage.getrusage(rusage.RUSAGE_SELF), \
        rusage.getrusage(rusage.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def bulk_load(url: str, path: Path, processes: int) -> tuple[float, float, int, Any]:
    """What ``medarchive import --bulk`` does (resumable: keyed by the file's digest)."""
    services = services_for(url)
    start, cpu = time.perf_counter(), cpu_seconds()
    report = BulkImport(services.repository, processes=processes).load_many(
        [file_source(path, key=digest(path))])[0]
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    assert report.ok, report.errors[:5]
    return seconds, cpu, report.stored, services


def phases(url: str, path: Path) -> dict[str, float]:
    """Where the fast path's CPU goes, per resource (µs), in this process: parsing and
    validation, search-index extraction (blinding and row building included), and the rest of
    an in-process load (stamping, sealing, the SQL writes), each measured in the same run."""
    from medarchive.service.bulk.imports import Preparer
    from medarchive.store.sql.indexing import index_rows

    services = services_for(url)
    try:
        repository = services.repository
        lines = [(n, line) for n, line in enumerate(ndjson_lines(path), start=1)]
        cpu = time.process_time()
        parsed = Preparer(repository.spec, None)(lines, None)
        parse = time.process_time() - cpu
        validated = Preparer(repository.spec, repository.validate)(lines, None)
        validate = time.process_time() - cpu - 2 * parse  # that pass parsed again
        cpu = time.process_time()
        for item in parsed:
            assert isinstance(item.resource, dict)
            index_rows(item.resource["resourceType"],
                       repository.store.index_entries(item.resource))
        extract = time.process_time() - cpu
        cpu = time.process_time()
        report = BulkImport(repository).load_many([file_source(path)])[0]
        whole = time.process_time() - cpu
        assert report.ok and len(validated) == report.stored
    finally:
        services.close()
    per = 1e6 / report.stored
    return {"parse_us": round(parse * per), "validate_us": round(validate * per),
            "extract_us": round(extract * per),
            "write_us": round((whole - parse - validate - extract) * per),
            "in_process_us": round(whole * per)}


def bundle_load(url: str, path: Path) -> tuple[float, float]:
    services = services_for(url)
    try:
        start, cpu = time.perf_counter(), cpu_seconds()
        report = import_file(path, services.submit, chunk_size=500)
        seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
        assert report.ok, report.errors[:5]
        return seconds, cpu
    finally:
        services.close()


def raw_insert(url: str, path: Path) -> float:
    db = open_database(url)
    try:
        with db.writing() as cur:
            cur.execute("CREATE TABLE raw_rows (id TEXT PRIMARY KEY, res_type TEXT NOT NULL, "
                        f"body {'BYTEA' if db.dialect == 'postgresql' else 'BLOB'} NOT NULL)")
        insert = db.sql("INSERT INTO raw_rows (id, res_type, body) VALUES (?, ?, ?)")
        start = time.perf_counter()
        batch: list[tuple[str, str, bytes]] = []
        for line in ndjson_lines(path):
            resource = orjson.loads(line)
            batch.append((resource["id"], resource["resourceType"], line.rstrip(b"\n")))
            if len(batch) == 2000:
                with db.writing() as cur:
                    cur.executemany(insert, batch)
                batch = []
        if batch:
            with db.writing() as cur:
                cur.executemany(insert, batch)
        return time.perf_counter() - start
    finally:
        db.close()


def export_all(services: Any, folder: Path) -> tuple[float, int]:
    repository = services.repository
    params: dict[str, Any] = {"level": "system", "types": sorted(repository.spec.resource_types),
              "type_filters": {}, "since": None}
    handles: dict[str, Any] = {}
    count = 0
    start = time.perf_counter()
    for version in stream(repository, params, after_seq=0, max_seq=repository.last_seq()):
        handle = handles.get(version.resource_type)
        if handle is None:
            handle = handles[version.resource_type] = (
                folder / f"{version.resource_type}.ndjson").open("wb")
        handle.write(version.body + b"\n")
        count += 1
    for handle in handles.values():
        handle.close()
    return time.perf_counter() - start, count


def store_without_index(url: str, count: int) -> Any:
    """A store holding ``count`` demo resources, loaded without validation or indexing."""
    from datetime import UTC, datetime

    from medarchive.fhir.search.entries import IndexEntries
    from medarchive.store.base import Change
    from medarchive.store.sql.store import SqlStore

    store = SqlStore(open_database(url), lambda resource: IndexEntries())
    when = datetime.now(UTC)
    batch: list[Change] = []
    patients = max(1, count // 200)
    for resource in generate_ndjson(patients * 2, seed=1):
        batch.append(Change(resource["resourceType"], resource["id"], 1, 0, when, False,
                            orjson.dumps(resource), resource))
        if len(batch) == 5000:
            store.write(batch)
            count -= len(batch)
            batch = []
            if count <= 0:
                break
    if batch and count > 0:
        store.write(batch[:count])
    return store


def export_only(args: argparse.Namespace) -> dict[str, Any]:
    from datetime import UTC, datetime

    from medarchive.fhir.spec import load_spec
    from medarchive.service.repository import Repository

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        url, schema = fresh_url(args.backend, folder)
        try:
            store = store_without_index(url, args.resources)
            repository = Repository(store, load_spec(), new_id=lambda: "",
                                    now=lambda: datetime.now(UTC))
            services = type("S", (), {"repository": repository})()
            out = folder / "export"
            out.mkdir()
            cpu = time.process_time()
            seconds, exported = export_all(services, out)
            cpu = time.process_time() - cpu
            start, scan_cpu = time.perf_counter(), time.process_time()
            scanned = 0
            with store.db.reading() as cur, (folder / "scan.ndjson").open("wb") as handle:
                cur.execute("SELECT body FROM resource_version ORDER BY seq")
                while rows := cur.fetchmany(5000):
                    for (body,) in rows:
                        handle.write(bytes(body) + b"\n")
                    scanned += len(rows)
            scan, scan_cpu = time.perf_counter() - start, time.process_time() - scan_cpu
            built, incremental = (None, None) if args.skip_warehouse else \
                warehouse_builds(repository, store, folder)
            store.close()
        finally:
            drop(schema)
    result = {"benchmark": "bulk-export", "backend": args.backend, "resources": exported,
              "export_seconds": round(seconds, 2), "export_per_s": round(exported / seconds),
              "export_cpu_seconds": round(cpu, 2), "export_per_cpu_s": round(exported / cpu),
              "reference_scan_seconds": round(scan, 2),
              "reference_scan_per_s": round(scanned / scan),
              "reference_scan_cpu_seconds": round(scan_cpu, 2),
              "export_vs_scan": round(seconds / scan, 2),
              "load_average": [round(x, 2) for x in os.getloadavg()]}
    if built is not None and incremental is not None:
        result.update(warehouse_build_seconds=round(built.seconds, 2),
                      warehouse_rows=built.views,
                      warehouse_incremental_changes=incremental.changes,
                      warehouse_incremental_seconds=round(incremental.seconds, 2))
    return result


def warehouse_builds(repository: Any, store: Any, folder: Path) -> tuple[Any, Any]:
    """A full warehouse build (the shipped views) over the store, then 1,000 updates and an
    incremental build."""
    from datetime import UTC, datetime

    from medarchive.analytics import library, warehouse
    from medarchive.store.base import Change

    path = folder / "warehouse.duckdb"
    built = warehouse.build(repository, path, library.views())
    when = datetime.now(UTC)
    changes = []
    for version in store.changes(0, 1000):
        resource = {**version.resource(), "language": "en"}
        changes.append(Change(version.resource_type, version.id, 2, 1, when, False,
                              orjson.dumps(resource), resource))
    store.write(changes)
    return built, warehouse.build(repository, path, library.views())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=100)
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--skip-bundles", action="store_true",
                        help="leave out the (slow) transaction-Bundle load")
    parser.add_argument("--phases", action="store_true",
                        help="also split the fast path's CPU per resource into its phases")
    parser.add_argument("--export-only", action="store_true")
    parser.add_argument("--resources", type=int, default=100_000)
    parser.add_argument("--skip-warehouse", action="store_true",
                        help="--export-only: leave out the warehouse builds")
    args = parser.parse_args()
    if args.export_only:
        print(json.dumps(export_only(args), indent=2))
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        source = folder / "demo.ndjson"
        with source.open("wb") as handle:
            for resource in generate_ndjson(args.patients, seed=1):
                handle.write(orjson.dumps(resource) + b"\n")
        result: dict[str, Any] = {"benchmark": "bulk", "backend": args.backend,
                                  "patients": args.patients, "processes": args.processes}
        url, schema = fresh_url(args.backend, folder)
        try:
            seconds, cpu, stored, services = bulk_load(url, source, args.processes)
            result.update(resources=stored, bulk_seconds=round(seconds, 2),
                          bulk_cpu_seconds=round(cpu, 2), bulk_per_s=round(stored / seconds))
            out = folder / "export"
            out.mkdir()
            export_seconds, exported = export_all(services, out)
            services.close()
            result.update(exported=exported, export_seconds=round(export_seconds, 2),
                          export_per_s=round(exported / export_seconds))
        finally:
            drop(schema)
        if args.phases:
            url, schema = fresh_url(args.backend, folder)
            try:
                result.update(phases(url, source))
            finally:
                drop(schema)
        if not args.skip_bundles:
            url, schema = fresh_url(args.backend, folder)
            try:
                bundles, bundles_cpu = bundle_load(url, source)
            finally:
                drop(schema)
            result.update(bundle_seconds=round(bundles, 2),
                          bundle_cpu_seconds=round(bundles_cpu, 2),
                          bundle_per_s=round(stored / bundles),
                          bulk_vs_bundles=round(bundles / seconds, 2),
                          bulk_vs_bundles_cpu=round(bundles_cpu / cpu, 2))
        url, schema = fresh_url(args.backend, folder)
        try:
            raw = raw_insert(url, source)
        finally:
            drop(schema)
        result.update(raw_insert_seconds=round(raw, 2), raw_insert_per_s=round(stored / raw),
                      bulk_slowdown_vs_raw=round(seconds / raw, 2))
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
