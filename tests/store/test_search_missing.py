"""``:missing`` with ``idx_param`` holding only the parameters that have no index row of their
own name (``store.sql.indexing.index_rows``), on every backend, and over rows written before
(every parameter in ``idx_param``)."""

from __future__ import annotations

from typing import Any

import pytest
from search_helpers import find, indexer, put

from medarchive.store.base import Store
from medarchive.store.sql.indexing import index_rows
from medarchive.store.sql.store import SqlStore

HEART_RATE: dict[str, Any] = {
    "resourceType": "Observation", "id": "hr", "status": "final",
    "identifier": [{"system": "urn:x", "value": "r1"}],
    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4",
                         "display": "Heart rate"}]},
    "subject": {"reference": "Patient/p"}, "effectiveDateTime": "2024-05-01T00:00:00Z",
    "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org",
                      "code": "/min"}}
# subject by identifier only: a value (subject:identifier row) but no row named "subject"
BY_IDENTIFIER: dict[str, Any] = {
    "resourceType": "Observation", "id": "byid", "status": "final",
    "code": {"text": "note"}, "subject": {"identifier": {"system": "urn:mrn", "value": "9"}}}
BARE: dict[str, Any] = {"resourceType": "Observation", "id": "bare", "status": "final",
                        "code": {"coding": [{"system": "http://loinc.org", "code": "1-1"}]}}


def test_only_parameters_without_rows_of_their_own_go_to_idx_param() -> None:
    tables = dict(index_rows("Observation", indexer()(HEART_RATE)))
    assert "idx_param" not in tables
    assert dict(index_rows("Observation", indexer()(BY_IDENTIFIER)))["idx_param"] == [
        ("Observation", "subject")]  # its row is named subject:identifier


def test_missing_is_answered_alike(store_factory: Any) -> None:
    store: Store = store_factory(indexer())
    put(store, HEART_RATE, BY_IDENTIFIER, BARE)
    _check(store)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_missing_over_rows_written_before(store_factory: Any) -> None:
    """As written before: an idx_param row for every parameter with a value."""
    store = store_factory(indexer())
    assert isinstance(store, SqlStore)
    put(store, HEART_RATE, BY_IDENTIFIER, BARE)
    with store.db.writing() as cur:
        cur.execute("DELETE FROM idx_param")
        cur.execute("SELECT rid, res_id FROM resource")
        for rid, res_id in cur.fetchall():
            found = indexer()({"hr": HEART_RATE, "byid": BY_IDENTIFIER,
                               "bare": BARE}[res_id])
            for param in found.params:
                cur.execute(store.db.sql("INSERT INTO idx_param (rid, res_type, param) "
                                         "VALUES (?, ?, ?)"), (rid, "Observation", param))
    _check(store)


def _check(store: Store) -> None:
    expected = {
        "subject:missing=false": ["byid", "hr"], "subject:missing=true": ["bare"],
        "code:missing=false": ["bare", "hr"], "code:missing=true": ["byid"],  # text only
        "value-quantity:missing=false": ["hr"],
        "value-quantity:missing=true": ["bare", "byid"],
        "identifier:missing=true": ["bare", "byid"], "date:missing=false": ["hr"],
        "code-value-quantity:missing=false": ["hr"],
    }
    for query, ids in expected.items():
        assert sorted(find(store, "Observation", query)) == ids, query
