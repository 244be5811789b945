"""Runs compiled views in DuckDB, the embedded analytics engine.

Resources go into a DuckDB table with one JSON column (``resources(resource_type, resource)``)
and the view runs as the single query ``compile.py`` produced; nothing is evaluated in Python.
Data arrives either as Python dicts (written to NDJSON in bounded chunks and read with
``read_ndjson_objects``, DuckDB's fastest JSON path) or straight from NDJSON files, e.g. a Bulk
Data export, which DuckDB reads without Python touching a line.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from medarchive.analytics.compile import CompiledView, compile_view
from medarchive.analytics.viewdef import ViewDefinition, ViewError

CHUNK = 50_000       # resources per NDJSON chunk: bounds memory while loading
RESOURCE_TABLE = "resources"
# Longest NDJSON line (one resource) read from a file. DuckDB sizes its read buffers from it,
# so a larger limit costs memory and time on every read; 8 MiB holds any clinical resource
# short of large inline attachments (Binary, DocumentReference with data).
MAX_LINE = 8 * 1024 * 1024


def connect(path: str | os.PathLike[str] | None = None) -> Any:
    """A DuckDB connection (in memory when ``path`` is None)."""
    import duckdb
    return duckdb.connect(str(path) if path is not None else ":memory:")


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"cannot serialise {type(value).__name__} as JSON")


def create_table(con: Any, table: str = RESOURCE_TABLE, *, temporary: bool = False) -> None:
    """Create the (empty) resource table: ``resource_type VARCHAR, resource JSON``."""
    temp = "TEMPORARY " if temporary else ""
    con.execute(f'CREATE OR REPLACE {temp}TABLE "{table}" '
                "(resource_type VARCHAR, resource JSON)")


def load(con: Any, resources: Iterable[dict[str, Any]], table: str = RESOURCE_TABLE,
         resource_type: str | None = None) -> int:
    """Append ``resources`` (only those of ``resource_type`` when given) to ``table``.

    Writes NDJSON chunks of ``CHUNK`` resources to a temporary file and bulk-reads each, so
    memory stays bounded however many resources the iterable yields.
    """
    count = 0
    with tempfile.TemporaryDirectory(prefix="medarchive-views-") as tmp:
        path = Path(tmp) / "chunk.ndjson"
        batch: list[bytes] = []
        for resource in resources:
            if resource_type is not None and resource.get("resourceType") != resource_type:
                continue
            batch.append(orjson.dumps(resource, default=_default))
            if len(batch) >= CHUNK:
                count += _flush(con, table, path, batch)
                batch = []
        if batch:
            count += _flush(con, table, path, batch)
    return count


def _flush(con: Any, table: str, path: Path, batch: list[bytes]) -> int:
    path.write_bytes(b"\n".join(batch) + b"\n")
    con.execute(f'INSERT INTO "{table}" SELECT json ->> \'resourceType\', json '
                f"FROM read_ndjson_objects(?)", [str(path)])
    return len(batch)


def ndjson_source(paths: Sequence[str | os.PathLike[str]], max_line: int = MAX_LINE) -> str:
    """A subquery reading NDJSON files as one ``resource`` (JSON text) row per line.

    Lines are read as plain text (``read_csv`` with a separator byte valid JSON never
    contains) rather than with ``read_ndjson_objects``, which is slower here: the compiled
    query parses each line once anyway.
    """
    files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths)
    return (f"(SELECT line AS resource FROM read_csv([{files}], columns = {{'line': 'VARCHAR'}}, "
            "delim = '\x01', quote = '', escape = '', header = false, auto_detect = false, "
            f"max_line_size = {int(max_line)}) WHERE line <> '')")


def execute(con: Any, compiled: CompiledView) -> list[tuple[Any, ...]]:
    """Run a compiled view; a failure inside the query becomes a ``ViewError``."""
    import duckdb
    try:
        return list(con.execute(compiled.sql).fetchall())
    except duckdb.Error as exc:
        raise ViewError(f"DuckDB could not run the view: {exc}".splitlines()[0]) from exc


def load_ndjson(con: Any, paths: Sequence[str | os.PathLike[str]],
                table: str = RESOURCE_TABLE) -> int:
    """Append every line of the NDJSON files to ``table`` (created by ``create_table``)."""
    before = _count(con, table)
    con.execute(f'INSERT INTO "{table}" SELECT json_extract_string(resource, '
                f"'$.resourceType'), resource FROM {ndjson_source(paths)}")
    return _count(con, table) - before


def create_view_table(con: Any, view: ViewDefinition | dict[str, Any], table: str,
                      source: str = RESOURCE_TABLE) -> int:
    """Materialise ``view`` over the loaded resource table ``source`` into ``table``.

    This is the warehouse path: resources are loaded once, then each view is one
    ``CREATE OR REPLACE TABLE ... AS`` query. Returns the number of rows.
    """
    return _create(con, table, compile_view(view, "duckdb", source=f'"{source}"'))


def create_view_table_ndjson(con: Any, view: ViewDefinition | dict[str, Any],
                             paths: Sequence[str | os.PathLike[str]], table: str) -> int:
    """Materialise ``view`` straight from NDJSON files into ``table``: one query, no staging."""
    compiled = compile_view(view, "duckdb", source=ndjson_source(paths), type_column=None)
    return _create(con, table, compiled)


def materialize(view: ViewDefinition | dict[str, Any], resources: Iterable[dict[str, Any]],
                duckdb_path: str | os.PathLike[str], table: str) -> int:
    """Write the rows of ``view`` over ``resources`` to ``table`` in the DuckDB file.

    The table is replaced. Resources are staged in a temporary table (bounded memory), then
    one ``CREATE TABLE ... AS`` runs the compiled view. Returns the number of rows.
    """
    compiled = compile_view(view, "duckdb", source="__medarchive_stage")
    con = connect(duckdb_path)
    try:
        create_table(con, "__medarchive_stage", temporary=True)
        load(con, resources, "__medarchive_stage", compiled.resource)
        return _create(con, table, compiled)
    finally:
        con.close()


def materialize_ndjson(view: ViewDefinition | dict[str, Any],
                       paths: Sequence[str | os.PathLike[str]],
                       duckdb_path: str | os.PathLike[str], table: str) -> int:
    """Like :func:`materialize`, reading NDJSON files directly (e.g. a Bulk Data export)."""
    con = connect(duckdb_path)
    try:
        return create_view_table_ndjson(con, view, paths, table)
    finally:
        con.close()


def _create(con: Any, table: str, compiled: CompiledView) -> int:
    import duckdb
    quoted = '"' + table.replace('"', '""') + '"'
    try:
        con.execute(f"CREATE OR REPLACE TABLE {quoted} AS {compiled.sql}")
    except duckdb.Error as exc:
        raise ViewError(f"DuckDB could not run the view: {exc}".splitlines()[0]) from exc
    return _count(con, table)


def _count(con: Any, table: str) -> int:
    quoted = '"' + table.replace('"', '""') + '"'
    row = con.execute(f"SELECT count(*) FROM {quoted}").fetchone()
    return int(row[0]) if row else 0
