"""Writing a view's rows as CSV, NDJSON or Parquet, for ``medarchive views run``.

SQL on FHIR v2 leaves output formats to the runner; CSV and NDJSON are what analysts open,
Parquet what other engines read. The DuckDB engine writes straight from its result table with
``COPY ... TO`` (no Python row objects, so a million rows cost no Python memory); the Python
and Spark engines hand over row dicts, written here (Parquet through DuckDB, which reads the
rows back from a temporary NDJSON file). Nested values (``collection`` columns, complex types)
are JSON in CSV cells.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from medarchive.analytics import duckdb_engine
from medarchive.analytics.viewdef import ViewDefinition

FORMATS = ("csv", "ndjson", "parquet")
_COPY = {"csv": "FORMAT csv, HEADER true", "ndjson": "FORMAT json",
         "parquet": "FORMAT parquet"}


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return value


def write_rows(rows: Iterable[dict[str, Any]], columns: Sequence[str], fmt: str,
               out: IO[bytes]) -> int:
    """Write row dicts as ``csv`` or ``ndjson`` to a binary stream; returns the count."""
    count = 0
    if fmt == "ndjson":
        for row in rows:
            out.write(orjson.dumps(row) + b"\n")
            count += 1
        return count
    text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
    writer = csv.writer(text)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
        count += 1
    text.detach()
    return count


def write_parquet(rows: Iterable[dict[str, Any]], path: str | os.PathLike[str]) -> int:
    """Write row dicts as one Parquet file (through DuckDB)."""
    with tempfile.TemporaryDirectory(prefix="medarchive-out-") as tmp:
        staged = Path(tmp) / "rows.ndjson"
        with staged.open("wb") as handle:
            count = write_rows(rows, (), "ndjson", handle)
        if not count:
            raise ValueError("the view gave no rows; an empty Parquet file has no schema")
        con = duckdb_engine.connect()
        try:
            con.execute(f"COPY (SELECT * FROM read_json_auto(?)) TO {_literal(path)} "
                        "(FORMAT parquet)", [str(staged)])
        finally:
            con.close()
    return count


def copy_ndjson_view(view: ViewDefinition | dict[str, Any], paths: Sequence[str],
                     fmt: str, path: str | os.PathLike[str]) -> int:
    """The DuckDB engine from NDJSON files straight to an output file; returns the rows."""
    con = duckdb_engine.connect()
    try:
        count = duckdb_engine.create_view_table_ndjson(con, view, paths, "view_rows")
        con.execute(f'COPY "view_rows" TO {_literal(path)} ({_COPY[fmt]})')
        return count
    finally:
        con.close()


def _literal(path: str | os.PathLike[str]) -> str:
    return "'" + str(path).replace("'", "''") + "'"
