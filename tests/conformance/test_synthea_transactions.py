"""Synthea patients as transaction Bundles (R4 §3.1.0.11.2), end to end over HTTP.

Each of the 30 bundles in ../shared/conformance/synthea/bundles is POSTed to the FHIR base as a
transaction. Every entry must be created, the per-type counts must match index.json, and every
``urn:uuid:`` reference must have been rewritten to a real ``Type/id`` that reads back. Writes
are not validated here (that is the validator's own conformance suite); this checks transaction
processing and reference resolution. Runs on every store backend.
"""

from __future__ import annotations

import itertools
import json
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.exceptions import StarletteDeprecationWarning

from medarchive.app import create_app
from medarchive.fhir.bundle import references
from medarchive.fhir.search.index import build_indexer
from medarchive.fhir.spec import load_spec
from medarchive.settings import Settings
from medarchive.store.base import Indexer, Store

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


@pytest.fixture(scope="module")
def synthea(conformance: Path) -> tuple[Path, list[dict[str, Any]]]:
    folder = conformance / "synthea"
    index = json.loads((folder / "index.json").read_text())
    return folder / "bundles", index["patients"]


@pytest.fixture(scope="module")
def indexer() -> Indexer:
    return build_indexer(load_spec())


def test_synthea_bundles_load_as_transactions(
        synthea: tuple[Path, list[dict[str, Any]]], indexer: Indexer,
        store_factory: Callable[[Indexer], Store]) -> None:
    folder, patients = synthea
    assert len(patients) == 30
    store = store_factory(indexer)
    numbers = itertools.count(1)
    settings = Settings(database_url="memory://", base_url="http://testserver", auth="off",
                        max_request_bytes=8 * 1024 * 1024)
    app = create_app(settings, store=store, spec=load_spec(), validator=None,
                     new_id=lambda: f"s{next(numbers)}")
    client = TestClient(app)
    expected_totals: Counter[str] = Counter()
    created: list[tuple[str, str]] = []
    for patient in patients:
        raw = (folder / patient["filename"]).read_bytes()
        response = client.post("/fhir", content=raw,
                               headers={"content-type": "application/fhir+json"})
        assert response.status_code == 200, (patient["filename"], response.text[:500])
        entries = response.json()["entry"]
        assert len(entries) == patient["entries"]
        assert {e["response"]["status"] for e in entries} == {"201 Created"}
        targets = [tuple(e["response"]["location"].split("/")[:2]) for e in entries]
        assert Counter(t[0] for t in targets) == Counter(patient["resourceCounts"])
        created += targets  # type: ignore[arg-type]
        expected_totals.update(patient["resourceCounts"])
    for rtype, total in expected_totals.items():
        bundle = client.get(f"/fhir/{rtype}", params={"_summary": "count"}).json()
        assert bundle["total"] == total, rtype
    live: set[tuple[str, str]] = set(created)  # type: ignore[arg-type]
    for rtype, rid in created:
        version = store.read(rtype, rid)
        assert version is not None and not version.deleted
        assert b"urn:uuid:" not in version.body.replace(b'"urn:ietf:rfc:3986"', b"")
        for ref in references(orjson.loads(version.body)):
            text = ref["reference"]
            if text.startswith("#"):
                continue
            kind, _, target = text.partition("/")
            assert (kind, target) in live, f"{rtype}/{rid} -> {text}"
    # a spot check through the API: a patient's observations are found by reference
    patient_ref = next(f"{t}/{i}" for t, i in created if t == "Patient")
    found = client.get("/fhir/Observation", params={"subject": patient_ref, "_count": "0"})
    assert found.json()["total"] == patients[0]["resourceCounts"]["Observation"]
