"""A SQLite backup's index image restored into PostgreSQL: every value arrives exactly as it
was, whatever characters it holds (tabs, newlines, carriage returns, backslashes,
``\\N``-looking text, unicode, empty strings), NULLs stay NULL, and integers and doubles keep
every bit."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

import psycopg
from backup_helpers import at, family_indexer, put
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medarchive.backup.keys import BackupKey, load_key
from medarchive.backup.restore import plan_restore, restore
from medarchive.backup.snapshot import create_backup
from medarchive.store import open_store
from medarchive.store.sql.indexing import INDEX_TABLES
from medarchive.store.sql.store import SqlStore

TRICKY = ["", "\\N", "\\", "\\\\", "\t", "\n", "\r", "\r\n", "\\.", "a\\tb", "\\x41",
          "é€😀", "\u2028", " "]
texts = st.one_of(st.sampled_from(TRICKY),
                  st.text(st.characters(blacklist_categories=("Cs",),
                                        blacklist_characters="\x00"), max_size=12),
                  st.lists(st.sampled_from(TRICKY), max_size=5).map("".join))
integers = st.integers(-(2 ** 63), 2 ** 63 - 1)
doubles = st.floats(allow_nan=False, allow_infinity=False)
SETTINGS = settings(max_examples=12, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def _source_rows(path: Path) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    conn = sqlite3.connect(path)
    try:
        found = {}
        for table in INDEX_TABLES:
            names = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
            found[table] = (names, sorted(conn.execute(f"SELECT * FROM {table}"), key=repr))
        return found
    finally:
        conn.close()


STRINGS = st.lists(st.tuples(texts, texts, texts, texts), max_size=30)
TOKENS = st.lists(st.tuples(texts, texts, st.none() | texts, st.none() | texts,
                            st.none() | texts), max_size=30)
NUMBERS = st.lists(st.tuples(texts, doubles, doubles, doubles), max_size=30)
DATES = st.lists(st.tuples(texts, integers, integers), max_size=30)


@SETTINGS
@given(strings=STRINGS, tokens=TOKENS, numbers=NUMBERS, dates=DATES)
def test_a_restore_into_postgres_keeps_every_index_value(
        postgres_schema_url: str, strings: list[tuple[Any, ...]],
        tokens: list[tuple[Any, ...]], numbers: list[tuple[Any, ...]],
        dates: list[tuple[Any, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        key: BackupKey = load_key(folder / "backup.key", create=True)
        source = open_store(f"sqlite:///{folder / 'source.db'}", family_indexer)
        assert isinstance(source, SqlStore)
        put(source, "Patient", "p1", at(1))
        with source.db.writing() as cur:
            cur.execute("SELECT rid FROM resource")
            rid = cur.fetchone()[0]
            cur.executemany("INSERT INTO idx_string (rid, res_type, param, value, exact) "
                            "VALUES (?, 'Patient', ?, ?, ?)", [(rid, *r[:3]) for r in strings])
            cur.executemany("INSERT INTO idx_token (rid, res_type, param, system, code, "
                            "display) VALUES (?, ?, ?, ?, ?, ?)", [(rid, *r) for r in tokens])
            cur.executemany("INSERT INTO idx_number (rid, res_type, param, value, low, high) "
                            "VALUES (?, 'Patient', ?, ?, ?, ?)", [(rid, *r) for r in numbers])
            cur.executemany("INSERT INTO idx_date (rid, res_type, param, low, high) "
                            "VALUES (?, 'Patient', ?, ?, ?)", [(rid, *r) for r in dates])
        create_backup(source.db, folder / "b", key)
        source.close()
        expected = _source_rows(folder / "source.db")
        restore(plan_restore(folder / "b", key), key, postgres_schema_url, force=True)
    with psycopg.connect(postgres_schema_url) as pg:
        for table, (names, rows) in expected.items():
            got = pg.execute(f"SELECT {', '.join(names)} FROM {table}").fetchall()
            assert sorted(got, key=repr) == rows, table
