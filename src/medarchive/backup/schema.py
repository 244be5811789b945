"""Which tables a backup holds, and how: found in the live schema, not hard-coded.

Every table that is state is backed up; tables other features add later (their own migrations,
or ``CREATE TABLE IF NOT EXISTS`` like the HL7 message log) are picked up without a change here.
Derived tables are skipped: ``reindex_job`` is progress bookkeeping, ``schema_migrations``
belongs to the target and ``latest_observation`` is derived from the index again by the store
(``store.sql.latest.ensure_built``); so are the tables of ``KEY_TABLES``.

Strategies:
  versions   resource_version, append-only with a global ``seq``: an incremental backup holds the
             rows above the previous high-water mark (see snapshot.py for why that mark is exact)
  resources  resource, one row per resource: an incremental backup holds the rows of the
             resources its versions touch; restore derives version/last_updated/deleted anew
  append     audit_event, append-only by contract (hash chain): incremental by ``seq``
  index      the search index (``idx_*``): copied by full backups only, sealed under a key the
             encryption key manager wraps (snapshot.py); a restore loads it and re-extracts only
             the resources that changed after the full backup, instead of every resource
  whole      everything else (accounts, clients, keys, applied_key, audit_head, the HL7 message
             log): copied whole in every backup, so rows updated in place (a dead letter
             replayed or discarded) are backed up as they are now
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

VERSIONS = "resource_version"
RESOURCES = "resource"
APPEND = {"audit_event": "seq", "audit_ref": "seq"}
DERIVED = {"reindex_job", "schema_migrations", "latest_observation"}
KEY_TABLES: frozenset[str] = frozenset()
"""Tables never copied into a backup. Empty: the wrapped data keys (``data_key``) are backed
up, because without them no sealed body can be read; shredding reaches backups through the
KEK (see docs/encryption.md and docs/operations.md, "Crypto-shredding and backups")."""
DATA_KEYS = "data_key"
APPLIED_KEYS = "applied_key"
"""Idempotency keys (HL7 sender + MSH-10, import chunks): copied whole; a point-in-time
restore drops those applied after its moment (``loading._rewind_keys``)."""


@dataclass(frozen=True)
class Table:
    """A table as the backup sees it: columns with portable kinds (int, real, text, bytes,
    bool), primary key and the columns the database generates itself."""

    name: str
    columns: tuple[tuple[str, str], ...]
    key: tuple[str, ...] = ()
    generated: tuple[str, ...] = ()

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    def to_json(self) -> dict[str, Any]:
        return {"columns": [list(c) for c in self.columns], "key": list(self.key),
                "generated": list(self.generated)}

    @classmethod
    def from_json(cls, name: str, doc: dict[str, Any]) -> Table:
        return cls(name, tuple((c[0], c[1]) for c in doc["columns"]), tuple(doc["key"]),
                   tuple(doc["generated"]))


def strategy(name: str) -> str:
    """How the table named ``name`` is backed up: versions, resources, append, index, whole or
    derived."""
    if name in DERIVED or name in KEY_TABLES:
        return "derived"
    if name.startswith("idx_"):
        return "index"
    if name == VERSIONS:
        return "versions"
    if name == RESOURCES:
        return "resources"
    if name in APPEND:
        return "append"
    return "whole"


def _sqlite_kind(declared: str) -> str:
    text = declared.upper()
    if "INT" in text:
        return "int"
    if "BOOL" in text:
        return "bool"
    if any(part in text for part in ("CHAR", "TEXT", "CLOB")):
        return "text"
    if any(part in text for part in ("REAL", "FLOA", "DOUB")):
        return "real"
    return "bytes" if "BLOB" in text or not text else "text"


def _pg_kind(data_type: str) -> str:
    if data_type in ("bigint", "integer", "smallint"):
        return "int"
    if data_type == "boolean":
        return "bool"
    if data_type == "bytea":
        return "bytes"
    if data_type in ("double precision", "real", "numeric"):
        return "real"
    return "text"


def list_tables(cur: Any, dialect: str) -> dict[str, Table]:
    """Every table of the current schema (SQLite file or PostgreSQL search_path schema)."""
    return _pg_tables(cur) if dialect == "postgresql" else _sqlite_tables(cur)


def _sqlite_tables(cur: Any) -> dict[str, Table]:
    cur.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' ORDER BY name")
    found = {}
    for (name,) in cur.fetchall():
        cur.execute(f'PRAGMA table_info("{name}")')
        info = cur.fetchall()  # cid, name, type, notnull, default, pk position
        columns = tuple((row[1], _sqlite_kind(row[2] or "")) for row in info)
        key = tuple(row[1] for row in sorted(info, key=lambda r: r[5]) if row[5])
        kinds = dict(columns)  # a lone integer key is SQLite's rowid: assigned when omitted
        generated = key if len(key) == 1 and kinds[key[0]] == "int" else ()
        found[name] = Table(name, columns, key, generated)
    return found


def _pg_tables(cur: Any) -> dict[str, Table]:
    cur.execute("SELECT table_name, column_name, data_type, is_identity, "
                "COALESCE(column_default, '') FROM information_schema.columns "
                "WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position")
    columns: dict[str, list[tuple[str, str]]] = {}
    generated: dict[str, list[str]] = {}
    for table, column, data_type, identity, default in cur.fetchall():
        columns.setdefault(table, []).append((column, _pg_kind(data_type)))
        if identity == "YES" or default.startswith("nextval("):
            generated.setdefault(table, []).append(column)
    cur.execute("SELECT kcu.table_name, kcu.column_name "
                "FROM information_schema.table_constraints tc "
                "JOIN information_schema.key_column_usage kcu "
                "ON tc.constraint_name = kcu.constraint_name "
                "AND tc.table_schema = kcu.table_schema "
                "WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = current_schema() "
                "ORDER BY kcu.table_name, kcu.ordinal_position")
    keys: dict[str, list[str]] = {}
    for table, column in cur.fetchall():
        keys.setdefault(table, []).append(column)
    return {name: Table(name, tuple(cols), tuple(keys.get(name, ())),
                        tuple(generated.get(name, ())))
            for name, cols in sorted(columns.items())}


_KEY_PART = re.compile(r"^[a-z_][a-z0-9_]*( (ASC|DESC))?$")
_COLUMNS = re.compile(r"\((.*)\)\s*$", re.S)


def build_order(cur: Any, dialect: str, table: str) -> str | None:
    """The ORDER BY list that makes building one of ``table``'s indexes nearly free after a
    restore: that of its costliest index to sort (the widest whose key does not begin with
    ``rid``, the order the rows were written in; ties by name). A PostgreSQL ``CREATE
    INDEX`` over rows already in key order skips most of its sort (measured: 6.0 -> 1.2
    CPU-s on 1.2 million ``(res_type, param, rid)`` rows). Only plain column keys qualify
    (no expression, operator class, collation or partial index); None: no such index."""
    if dialect == "postgresql":
        cur.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = "
                    "current_schema() AND tablename = %s", (table,))
    else:
        cur.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                    "AND tbl_name = ? AND sql IS NOT NULL", (table,))
    best: tuple[int, str, str] | None = None
    for name, sql in cur.fetchall():
        found = _COLUMNS.search(str(sql))
        if found is None or " where " in str(sql).lower():
            continue
        parts = [part.strip() for part in found.group(1).split(",")]
        if parts[0] == "rid" or not all(_KEY_PART.match(part) for part in parts):
            continue
        if best is None or (-len(parts), str(name)) < (best[0], best[1]):
            best = (-len(parts), str(name), ", ".join(parts))
    return best[2] if best else None


_TYPES = {"sqlite": {"int": "INTEGER", "real": "REAL", "text": "TEXT", "bytes": "BLOB",
                     "bool": "INTEGER"},
          "postgresql": {"int": "BIGINT", "real": "DOUBLE PRECISION", "text": "TEXT",
                         "bytes": "BYTEA", "bool": "BOOLEAN"}}


def create_sql(table: Table, dialect: str) -> str:
    """DDL for a backed-up table the target lacks (one another feature creates lazily)."""
    types = _TYPES[dialect]
    parts = []
    for name, kind in table.columns:
        decl = f"{name} {types[kind]}"
        if table.key == (name,) and name in table.generated:
            decl = (f"{name} INTEGER PRIMARY KEY" if dialect == "sqlite" else
                    f"{name} BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
        parts.append(decl)
    if table.key and not (len(table.key) == 1 and table.key[0] in table.generated):
        parts.append(f"PRIMARY KEY ({', '.join(table.key)})")
    return f"CREATE TABLE {table.name} ({', '.join(parts)})"
