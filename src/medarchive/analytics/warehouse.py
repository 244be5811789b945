"""The warehouse: every stored view (and the shipped library) as tables, kept up to date.

``build`` keeps a DuckDB file (``warehouse_path``, default ``var/warehouse.duckdb``) holding
``warehouse_resources(resource_type, id, resource JSON)``, the current version of every
resource, and one table per view computed from it by the compiled view query
(``duckdb_engine``). It is incremental: ``warehouse_state`` records the store's last change
sequence number read (``Store.changes``, the same feed backups use), and the next build reads
only the changes after it, replacing or deleting the affected rows, then recomputes only the
views whose resource type changed. Everything of one build runs in one DuckDB transaction: a
failed build leaves the previous warehouse as it was.

PostgreSQL hands out sequence numbers before commit, so a transaction with a lower number can
become visible after one with a higher number has been read; skipping it would lose it for
good. Each build therefore re-reads a ``window`` of sequence numbers before the recorded one
(default 10,000 on PostgreSQL; SQLite commits in sequence order, so 0). Re-reading is harmless:
rows are replaced by (type, id) with the latest version seen.

``spark_warehouse.build_spark`` does the same with Spark and Parquet datasets. A view is also
recomputed when its definition changed since the last build (its compiled query's digest is
kept in ``warehouse_state``). ``live_resources`` reads the current resources of some types
with bounded memory (the Bulk Data export stream), for ``medarchive views run`` on the store.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medarchive.analytics import duckdb_engine
from medarchive.analytics.compile import compile_view
from medarchive.analytics.viewdef import parse_view
from medarchive.service.bulk.export import stream
from medarchive.store.base import Version

RESOURCES = "warehouse_resources"
STATE = "warehouse_state"
PAGE = 50_000


@dataclass
class BuildReport:
    """What one build did: changes read (``from_seq``..``to_seq``), rows now in the resource
    table, rows per recomputed view, and the views left as they were."""

    from_seq: int
    to_seq: int
    changes: int = 0
    resources: int = 0
    views: dict[str, int] = field(default_factory=dict)
    unchanged: list[str] = field(default_factory=list)
    seconds: float = 0.0


def query_digest(sql: str) -> int:
    """A 63-bit digest of a compiled view query: a changed definition changes it."""
    return int.from_bytes(hashlib.sha256(sql.encode()).digest()[:8], "big") >> 1


def live_resources(repository: Any, types: list[str]) -> Iterator[Version]:
    """The current resources of ``types`` the acting actor may see, page by page."""
    params: dict[str, Any] = {"level": "system", "types": sorted(types), "type_filters": {},
                              "since": None}
    yield from stream(repository, params, after_seq=0, max_seq=repository.last_seq())


def _prepare(con: Any) -> int:
    con.execute(f"CREATE TABLE IF NOT EXISTS {RESOURCES} "
                "(resource_type VARCHAR, id VARCHAR, resource JSON)")
    con.execute(f"CREATE TABLE IF NOT EXISTS {STATE} (key VARCHAR PRIMARY KEY, value BIGINT)")
    row = con.execute(f"SELECT value FROM {STATE} WHERE key = 'last_seq'").fetchone()
    return int(row[0]) if row else 0


def _apply(con: Any, batch: dict[tuple[str, str], Version], folder: Path, empty: bool) -> None:
    """Replace the rows of ``batch``'s resources (deletions just go)."""
    path = folder / "changes.ndjson"
    with path.open("wb") as out:
        for version in batch.values():
            if not version.deleted:
                out.write(version.body + b"\n")
    con.execute("CREATE OR REPLACE TEMPORARY TABLE __stage AS SELECT "
                "json_extract_string(resource, '$.resourceType') AS resource_type, "
                "json_extract_string(resource, '$.id') AS id, resource::JSON AS resource "
                f"FROM {duckdb_engine.ndjson_source([path])}")
    if not empty:
        con.execute("CREATE OR REPLACE TEMPORARY TABLE __gone (resource_type VARCHAR, "
                    "id VARCHAR)")
        con.executemany("INSERT INTO __gone VALUES (?, ?)", list(batch))
        con.execute(f"DELETE FROM {RESOURCES} WHERE (resource_type, id) IN "
                    "(SELECT resource_type, id FROM __gone)")
    con.execute(f"INSERT INTO {RESOURCES} SELECT resource_type, id, resource FROM __stage")


def build(repository: Any, path: str | Path, views: Mapping[str, dict[str, Any]], *,
          window: int = 0, page: int = PAGE) -> BuildReport:
    """Bring the DuckDB warehouse at ``path`` up to date with the store (see module doc)."""
    started = time.perf_counter()
    compiled = {name: compile_view(parse_view(view), "duckdb", source=f'"{RESOURCES}"')
                for name, view in views.items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    con = duckdb_engine.connect(path)
    try:
        con.execute("BEGIN TRANSACTION")
        last = _prepare(con)
        empty = con.execute(f"SELECT count(*) FROM {RESOURCES}").fetchone()[0] == 0
        start = max(0, last - window) if last else 0
        upto = repository.last_seq()
        report = BuildReport(start, upto)
        changed: set[str] = set()
        after = start
        with tempfile.TemporaryDirectory(prefix="medarchive-warehouse-") as tmp:
            while after < upto:
                versions = [v for v in repository.store.changes(after, page) if v.seq <= upto]
                if not versions:
                    break
                batch: dict[tuple[str, str], Version] = {}
                for version in versions:
                    batch[(version.resource_type, version.id)] = version
                    changed.add(version.resource_type)
                _apply(con, batch, Path(tmp), empty)
                empty = False
                report.changes += len(versions)
                after = versions[-1].seq
        existing = {row[0] for row in con.execute("SELECT table_name FROM "
                                                  "information_schema.tables").fetchall()}
        for name, query in compiled.items():
            digest = query_digest(query.sql)
            kept = con.execute(f"SELECT value FROM {STATE} WHERE key = ?",
                               [f"view:{name}"]).fetchone()
            if name in existing and query.resource not in changed and kept \
                    and kept[0] == digest:
                report.unchanged.append(name)
                continue
            con.execute(f'CREATE OR REPLACE TABLE "{name}" AS {query.sql}')
            con.execute(f"INSERT OR REPLACE INTO {STATE} VALUES (?, ?)", [f"view:{name}", digest])
            report.views[name] = int(con.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0])
        con.execute(f"INSERT OR REPLACE INTO {STATE} VALUES ('last_seq', ?)", [upto])
        report.resources = int(con.execute(f"SELECT count(*) FROM {RESOURCES}").fetchone()[0])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.close()
    report.seconds = time.perf_counter() - started
    return report


def query(path: str | Path, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``sql`` on the warehouse (read-only); the column names and the rows."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no warehouse yet (run medarchive warehouse build)")
    import duckdb
    con = duckdb.connect(str(path), read_only=True)
    try:
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description or ()]
        return columns, list(cursor.fetchall())
    finally:
        con.close()
