"""Blind string rows written before prefix chains re-extracted once, when a store with
encryption at rest opens the database.

Prefix searches on blinded parameters read prefix chains (``crypto.blind``: one row per text).
A database written before them, or restored from a backup taken before them, still holds one
row per prefix (a 22-character HMAC each), which those searches would miss. ``ensure_chained``
looks for such rows once (one scan of the blinded types' string rows; its ``reindex_job`` row
remembers that it was done, and a restore empties that table, so a restored database is
looked at again) and, when there are any, re-extracts the index of the blinded types' current
resources (``run_reindex``: resumable, so an interrupted start goes on where it stopped).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from medarchive.crypto.blind import BLIND_DATES, BLIND_TYPES, DIGEST_CHARS
from medarchive.store.base import ReindexProgress
from medarchive.store.sql.database import Database

JOB = "blind-chains"
_TYPES = sorted(BLIND_TYPES)
_DATES = sorted(BLIND_DATES)
log = logging.getLogger(__name__)


def _done(cur: Any, sql: Callable[[str], str]) -> bool:
    cur.execute(sql("SELECT 1 FROM reindex_job WHERE job = ? AND finished = ?"), (JOB, True))
    return cur.fetchone() is not None


def _per_prefix_rows(cur: Any, sql: Callable[[str], str]) -> bool:
    types, dates = ", ".join("?" * len(_TYPES)), ", ".join("?" * len(_DATES))
    cur.execute(sql(f"SELECT 1 FROM idx_string WHERE res_type IN ({types}) "
                    f"AND param NOT IN ({dates}) AND length(value) = ? LIMIT 1"),
                (*_TYPES, *_DATES, DIGEST_CHARS))
    return cur.fetchone() is not None


def ensure_chained(db: Database, reindex: Callable[[str, list[str]], ReindexProgress]
                   ) -> bool:
    """Re-extract the blinded types' index with ``reindex(job, types)`` when per-prefix rows
    are left; returns whether it did."""
    with db.reading() as cur:
        if _done(cur, db.sql):
            return False
        stale = _per_prefix_rows(cur, db.sql)
    if stale:
        log.warning("re-extracting the search index of %s resources: their blind rows are one "
                    "per prefix, written before prefix chains (once)", "/".join(_TYPES))
        reindex(JOB, _TYPES)
        return True
    with db.writing() as cur:
        cur.execute(db.sql("INSERT INTO reindex_job (job, last_rid, done, total, finished, "
                           "started, updated) VALUES (?, 0, 0, 0, ?, 0, 0) "
                           "ON CONFLICT (job) DO NOTHING"), (JOB, True))
    return False
