"""The fast path writes exactly the index rows a transaction writes, whether the rows are
made in worker processes or in-process."""

from __future__ import annotations

from typing import Any

import orjson
from bulk_checks import index_rows

from medarchive.service.bulk.imports import BulkImport, file_source


def test_the_fast_path_indexes_exactly_like_transactions(tmp_path: Any) -> None:
    """Every index table (new ones included, through the store's generic extraction) gets
    the same rows from the process pool, in-process, and from transaction Bundles."""
    from medarchive.app import build_services
    from medarchive.demo.generate import generate_ndjson
    from medarchive.service.ingest import import_file
    from medarchive.settings import load_settings
    path = tmp_path / "demo.ndjson"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in generate_ndjson(1, seed=3)))
    found = []
    for way in ("pool", "here", "bundles"):
        services = build_services(load_settings(
            {"database_url": f"sqlite:///{tmp_path / way}.db", "auth": "off",
             "encryption": "off"}, environ={}))  # blind indexes differ per database
        if way == "bundles":
            assert import_file(path, services.submit, chunk_size=100).ok
        else:
            report = BulkImport(services.repository, chunk=60,
                                processes=1 if way == "pool" else 0).load_many(
                [file_source(path)])[0]
            assert report.ok, report.errors[:3]
        found.append(index_rows(services.store.db))
        services.close()
    assert found[0] == found[1] == found[2]
    assert all(found[0][table] for table in ("idx_token", "idx_reference", "idx_date_sort"))
