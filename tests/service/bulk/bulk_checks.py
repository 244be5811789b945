"""What the bulk tests compare: the search index of a database, independent of row ids."""

from __future__ import annotations

from typing import Any

from medarchive.store.sql.indexing import INDEX_TABLES


def index_rows(db: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every search-index table, with the rid replaced by type/id."""
    rows = {}
    with db.reading() as cur:
        cur.execute("SELECT rid, res_type, res_id FROM resource")
        keys = {rid: f"{rtype}/{rid_}" for rid, rtype, rid_ in cur.fetchall()}
        for table in INDEX_TABLES:
            cur.execute(f"SELECT * FROM {table}")
            rows[table] = sorted((keys[row[0]], *row[1:]) for row in cur.fetchall())
    return rows
