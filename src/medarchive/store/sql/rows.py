"""Many rows in one statement, written so that the statement's text does not grow with them.

A multi-row ``VALUES`` list has one placeholder per value: 500 rows of 11 columns are 5,500.
SQLite compiles each text once and keeps it in its statement cache. psycopg, for PostgreSQL,
rewrites the placeholders of every text it has not cached in Python, and caches none over 4 KB:
for the raw readings the device landing inserts, that rewrite cost as much CPU as the rest of
the landing (docs/performance.md, devices, session 9). So on PostgreSQL the rows go as one array
per column, ``unnest``-ed (PostgreSQL §9.19): one placeholder per column, one text for any
number of rows, each array sent in binary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def rows_query(dialect: str, rows: Sequence[Sequence[Any]], types: Sequence[str]
               ) -> tuple[str, list[Any]]:
    """``rows`` (each with one value per column of ``types``, PostgreSQL type names) as a
    query usable where ``VALUES`` is (``INSERT ... <query>``, ``WITH name AS (<query>)``), and
    its parameters (``?`` placeholders): ``VALUES`` on SQLite, ``SELECT * FROM unnest(...)``
    on PostgreSQL. The rows come out in the order given."""
    if dialect == "postgresql":
        arrays = ", ".join(f"?::{kind}[]" for kind in types)
        columns = [list(column) for column in zip(*rows, strict=True)]
        return f"SELECT * FROM unnest({arrays})", columns
    marks = "(" + ", ".join("?" * len(types)) + ")"
    return f"VALUES {', '.join([marks] * len(rows))}", [value for row in rows for value in row]
