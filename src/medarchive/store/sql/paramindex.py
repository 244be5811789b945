"""Rebuilding the index rows of one search parameter (``medarchive db reindex --param``).

When a search parameter is added (a SearchParameter resource stored in the record,
``fhir.search.custom``) or its extraction fixed, only its rows are stale. ``run_reindex`` then
runs with an indexer that extracts that parameter alone and with ``param_replacer``: each
batch deletes and rewrites the rows of that parameter and of its modifier rows (``code:text``,
``subject:identifier``, ``identifier:of-type``, which live under derived names), in every index
table, and leaves every other row of the resource alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from typing import Any

from medarchive.fhir.search.entries import IndexEntries
from medarchive.store.base import reindex_job_key
from medarchive.store.sql.indexing import INDEX_TABLES, index_rows, insert_index

_CHUNK = 200

Replacer = Callable[[Any, Callable[[str], str], Sequence[int],
                     Sequence[tuple[int, str, IndexEntries]]], None]
"""(cursor, sql, rids, items) -> None: how a reindex batch replaces the rows of ``rids``."""


def _ours(param: str) -> Callable[[str], bool]:
    derived = param + ":"
    return lambda name: name == param or name.startswith(derived)


def param_entries(found: IndexEntries, param: str) -> IndexEntries:
    """The entries of ``param`` (and its derived modifier names) alone."""
    ours = _ours(param)
    kept: dict[str, Any] = {}
    for item in fields(found):
        value = getattr(found, item.name)
        if item.name == "params":
            kept["params"] = frozenset(name for name in value if ours(name))
        else:
            kept[item.name] = tuple(entry for entry in value if ours(entry.param))
    return replace(found, **kept)


def param_replacer(param: str) -> Replacer:
    """Replace only ``param``'s rows (``name = param`` or ``name`` starting ``param:``)."""
    def run(cur: Any, sql: Callable[[str], str], rids: Sequence[int],
            items: Sequence[tuple[int, str, IndexEntries]]) -> None:
        for start in range(0, len(rids), _CHUNK):
            chunk = list(rids[start:start + _CHUNK])
            marks = ", ".join("?" * len(chunk))
            for table in INDEX_TABLES:  # ';' follows ':': [param:, param;) holds param:*
                cur.execute(sql(f"DELETE FROM {table} WHERE rid IN ({marks}) AND "
                                "(param = ? OR (param >= ? AND param < ?))"),
                            [*chunk, param, param + ":", param + ";"])
        insert_index(cur, sql, (), [(rid, index_rows(rtype, param_entries(found, param)))
                                    for rid, rtype, found in items])
    return run


def param_job_key(job: str, param: str, resource_type: str | None) -> str:
    """The name a one-parameter job's progress is kept under: ``job@param`` (or
    ``job:Type@param`` when confined to one type), apart from every other scope."""
    return f"{reindex_job_key(job, resource_type)}@{param}"
