"""The Spark warehouse: every view as a Parquet dataset, kept up to date incrementally.

The same model as the DuckDB warehouse (``warehouse.build``), on files a cluster can read:

- ``FOLDER/_resources/`` holds the current version of every resource as Parquet rows
  ``(resource_type, id, resource)`` (the JSON text);
- ``FOLDER/<view>/`` one Parquet dataset per view, computed from it by the view compiled to
  Spark SQL;
- ``FOLDER/_state.json`` the store's last change sequence number read, and the digest of each
  view's compiled query (a view whose definition changed is recomputed).

A build reads only the changes after the recorded number (``Store.changes``), keeps the rows of
the resources they do not touch (a left anti join on ``(resource_type, id)``), adds the changed
resources' current versions (deletions just go), and recomputes only the views whose resource
type changed. Every dataset of a build is written under ``FOLDER/.build-<id>/`` first and moved
into place only when all of them were written; the state file is replaced last. A build that
fails or is killed before the moves leaves the previous warehouse as it was; one killed during
the moves leaves datasets that are already newer than the state says, and the next build reads
those changes again, which is harmless: applying a change twice gives the same rows. The same
re-read ``window`` as the DuckDB build covers PostgreSQL's sequence numbers that become visible
out of order.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson

from medarchive.analytics.compile import compile_view
from medarchive.analytics.spark_engine import ndjson_dataframe
from medarchive.analytics.viewdef import parse_view
from medarchive.analytics.warehouse import PAGE, BuildReport, query_digest

RESOURCES = "_resources"
STATE = "_state.json"


def _state(folder: Path) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads((folder / STATE).read_text())
        return state
    except FileNotFoundError:
        return {"last_seq": 0, "views": {}}


def _save_state(folder: Path, state: dict[str, Any]) -> None:
    part = folder / f".{STATE}.part"
    with part.open("w") as handle:
        json.dump(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    part.replace(folder / STATE)


def _read_changes(repository: Any, start: int, upto: int, page: int, changed: Path,
                  gone: Path) -> tuple[int, set[str]]:
    """Write the current bodies of the changed resources (``changed``, NDJSON) and the keys
    of every changed resource (``gone``, NDJSON); the number of changes and their types."""
    latest: dict[tuple[str, str], Any] = {}
    count, types, after = 0, set(), start
    while after < upto:
        versions = [v for v in repository.store.changes(after, page) if v.seq <= upto]
        if not versions:
            break
        for version in versions:
            latest[(version.resource_type, version.id)] = version
            types.add(version.resource_type)
        count += len(versions)
        after = versions[-1].seq
    with changed.open("wb") as bodies, gone.open("wb") as keys:
        for (rtype, rid), version in latest.items():
            keys.write(orjson.dumps({"resource_type": rtype, "id": rid}) + b"\n")
            if not version.deleted:
                bodies.write(version.body + b"\n")
    return count, types


def _resources(spark: Any, folder: Path, changed: Path, gone: Path, fresh: bool) -> Any:
    """The new resource rows: the old ones the changes leave alone, plus the changed ones."""
    added = ndjson_dataframe(spark, [str(changed)]).selectExpr(
        "resource_type", "get_json_object(resource, '$.id') AS id", "resource")
    if fresh:
        return added
    old = spark.read.parquet(str(folder / RESOURCES))
    keys = spark.read.schema("resource_type STRING, id STRING").json(str(gone))
    return old.join(keys, ["resource_type", "id"], "left_anti").unionByName(added)


def build_spark(repository: Any, folder: str | Path, views: Mapping[str, dict[str, Any]],
                spark: Any, *, window: int = 0, page: int = PAGE) -> BuildReport:
    """Bring the Parquet warehouse in ``folder`` up to date with the store (module doc)."""
    started = time.perf_counter()
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    models = {name: parse_view(view) for name, view in views.items()}
    state = _state(out)
    fresh = not (out / RESOURCES).exists()
    start = 0 if fresh else max(0, int(state["last_seq"]) - window)
    upto = repository.last_seq()
    report = BuildReport(start, upto)
    staging = out / f".build-{uuid.uuid4().hex}"
    try:
        with tempfile.TemporaryDirectory(prefix="medarchive-warehouse-") as tmp:
            changed, gone = Path(tmp) / "changed.ndjson", Path(tmp) / "gone.ndjson"
            report.changes, types = _read_changes(repository, start, upto, page, changed,
                                                  gone)
            if report.changes or fresh:
                _resources(spark, out, changed, gone, fresh).write.parquet(
                    str(staging / RESOURCES))
            source = spark.read.parquet(str(staging / RESOURCES) if staging.exists()
                                        else str(out / RESOURCES))
            source.createOrReplaceTempView("warehouse_resources")
            try:
                report.resources = int(source.count())
                for name, model in models.items():
                    query = compile_view(model, "spark", source="warehouse_resources")
                    digest = query_digest(query.sql)
                    if (out / name).exists() and model.resource not in types \
                            and state["views"].get(name) == digest:
                        report.unchanged.append(name)
                        continue
                    spark.sql(query.sql).write.parquet(str(staging / name))
                    state["views"][name] = digest
                    report.views[name] = int(spark.read.parquet(str(staging / name)).count())
            finally:
                spark.catalog.dropTempView("warehouse_resources")
        _publish(out, staging)
        state["last_seq"] = upto
        _save_state(out, state)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report.seconds = time.perf_counter() - started
    return report


def _publish(out: Path, staging: Path) -> None:
    """Move every dataset written under ``staging`` into place, replacing the old one."""
    if not staging.exists():
        return
    retired = out / f".old-{staging.name}"
    retired.mkdir()
    for dataset in sorted(staging.iterdir()):
        target = out / dataset.name
        if target.exists():
            target.rename(retired / dataset.name)
        dataset.rename(target)
    shutil.rmtree(retired, ignore_errors=True)
