"""The cost of ``:missing`` counts since ``idx_param`` keeps only the parameters without rows of
their own (docs/search.md), on SQLite: ``--observations`` vital-signs Observations written
twice through ``SqlStore.write_prepared``, once with an ``idx_param`` row per parameter (as
before) and counted the previous way (``idx_param`` alone), once as now and counted by the
store. CPU ms per count, each repeated for a second.

    python benchmarks/missing.py [--observations 50000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from medarchive.devices.raw import Row
from medarchive.devices.vitals import VitalSigns
from medarchive.fhir.search.index import build_indexer
from medarchive.fhir.search.parse import parse_search
from medarchive.fhir.spec import load_spec
from medarchive.store.sql.database import open_database
from medarchive.store.sql.store import SqlStore

KINDS = [("heart_rate", 72.0), ("spo2", 97.0), ("respiratory_rate", 16.0), ("temperature", 37.1)]
PARAMS = ["date", "value-quantity", "subject"]


def fill(store: SqlStore, vitals: VitalSigns, indexer: Any, count: int, before: bool) -> None:
    when = datetime.now(UTC)
    for start in range(0, count, 1000):
        changes, rows = [], []
        for i in range(start, min(start + 1000, count)):
            kind, value = KINDS[i % 4]
            at = f"2024-05-{1 + i // 86400 % 28:02d}T{i // 3600 % 24:02d}:" \
                 f"{i // 60 % 60:02d}:{i % 60:02d}Z"
            change, found = vitals.change(Row(f"d/{kind}/{at}", "d", kind, (value,), at, 0,
                                              f"Patient/p{i % 20}", "Device/d", 0), f"o{i}", when)
            if before:
                found = [*found, ("idx_param", [("Observation", param) for param in
                                                sorted(indexer(change.resource).params)])]
            changes.append(change)
            rows.append(found)
        store.write_prepared(changes, rows, [None] * len(changes))


def _count(conn: Any, sql: str, param: str) -> int:
    return int(conn.execute(sql, (param,)).fetchone()[0])


def cpu_ms(run: Callable[[], int]) -> tuple[int, float]:
    found, began, times = run(), time.process_time(), 0
    while time.process_time() - began < 1.0:
        run()
        times += 1
    return found, round(1e3 * (time.process_time() - began) / times, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--observations", type=int, default=50_000)
    args = parser.parse_args()
    spec = load_spec()
    indexer = build_indexer(spec)
    vitals = VitalSigns(indexer)
    out: dict[str, Any] = {"benchmark": "missing_counts", "observations": args.observations}
    with tempfile.TemporaryDirectory() as tmp:
        stores = {way: SqlStore(open_database(f"sqlite:///{tmp}/{way}.db"), indexer,
                                encryption=None) for way in ("before", "now")}
        for way, store in stores.items():
            fill(store, vitals, indexer, args.observations, way == "before")
        for param in PARAMS:
            for missing in ("false", "true"):
                query = parse_search(spec, "Observation", [(f"{param}:missing", missing)],
                                     default_count=20, max_count=1000).query
                negate = "NOT " if missing == "true" else ""
                old = ("SELECT COUNT(*) FROM resource r WHERE r.res_type = 'Observation' AND "
                       f"r.deleted = 0 AND r.rid {negate}IN (SELECT rid FROM idx_param WHERE "
                       "res_type = 'Observation' AND param = ?)")
                conn = stores["before"].db._connection()  # type: ignore[attr-defined]
                out[f"{param}:missing={missing}"] = {
                    "before": cpu_ms(partial(_count, conn, old, param)),
                    "now": cpu_ms(partial(stores["now"].count, query))}
        for store in stores.values():
            store.close()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
