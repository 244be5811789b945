"""Helpers for the search tests: the real R4 indexer, writing resources, searching by URL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import parse_qsl

import orjson

from medarchive.fhir.search.index import Indexer, build_indexer
from medarchive.fhir.search.parse import parse_search
from medarchive.fhir.spec import Spec, load_spec
from medarchive.store.base import Change, Store

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@cache
def spec() -> Spec:
    return load_spec()


@cache
def indexer() -> Indexer:
    return build_indexer(spec())


def put(store: Store, *resources: dict[str, Any], when: datetime = T0) -> None:
    """Create or update ``resources`` in one write (ids are required)."""
    changes = []
    for n, resource in enumerate(resources):
        current = store.read(resource["resourceType"], resource["id"])
        version = current.version_id if current else 0
        changes.append(Change(resource["resourceType"], resource["id"], version + 1, version,
                              when + timedelta(microseconds=n), False,
                              orjson.dumps(resource), resource))
    store.write(changes)


def delete(store: Store, resource_type: str, id: str) -> None:
    current = store.read(resource_type, id)
    assert current is not None
    store.write([Change(resource_type, id, current.version_id + 1, current.version_id, T0,
                        True, b"", None)])


def find(store: Store, resource_type: str | None, query: str) -> list[str]:
    """Ids matching ``query`` (a URL query string), in result order; the store's count must
    agree with the number of results."""
    parsed = parse_search(spec(), resource_type, parse_qsl(query, keep_blank_values=True),
                          default_count=1000, max_count=1000)
    assert not parsed.unknown, f"unknown parameters {parsed.unknown}"
    found = [v.id for v in store.search(parsed.query)]
    if parsed.query.offset == 0 and len(found) < parsed.query.count:
        assert store.count(parsed.query) == len(found)
    return found


def patient(id: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": id, **fields}


def observation(id: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": id, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "0000-0"}]}, **fields}
