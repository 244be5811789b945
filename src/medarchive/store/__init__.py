"""Persistence of FHIR resource versions and their search index, behind one Store protocol."""

from __future__ import annotations

from typing import Any

from medarchive.store.base import Indexer, Store


def open_store(url: str, indexer: Indexer, *, busy_timeout_ms: int = 30_000,
               pool_size: int = 10, encryption: Any = None) -> Store:
    """The store a database URL names: ``memory://``, ``sqlite:///PATH`` or ``postgresql://...``.

    SQL stores bring their schema up to date (versioned migrations) before returning; with
    ``encryption`` (a ``crypto.encryption.Encryption``) they encrypt at rest. The memory store
    keeps nothing at rest and ignores it.
    """
    if url.startswith("memory:"):
        from medarchive.store.memory import MemoryStore
        return MemoryStore(indexer)
    from medarchive.store.sql.database import open_database
    from medarchive.store.sql.store import SqlStore
    db = open_database(url, busy_timeout_ms=busy_timeout_ms, pool_size=pool_size)
    try:
        return SqlStore(db, indexer, encryption=encryption)
    except BaseException:
        db.close()
        raise
