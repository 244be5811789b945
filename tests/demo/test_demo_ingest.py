"""Generated bundles go through MedArchive's own service path: the reference bundle, then
patients whose urn:uuid and Type/id references the transaction resolves."""

from __future__ import annotations

import pytest

from medarchive.demo import generate, reference_bundle


def test_demo_bundles_are_accepted_by_the_service() -> None:
    app = pytest.importorskip("medarchive.app")
    settings = pytest.importorskip("medarchive.settings")
    query = pytest.importorskip("medarchive.fhir.search.query")
    services = app.build_services(settings.load_settings({"database_url": "memory://"},
                                                         environ={}))
    try:
        services.submit(reference_bundle(3))
        created = 0
        for bundle in generate(3, seed=3):
            response = services.submit(bundle)
            assert len(response["entry"]) == len(bundle["entry"])
            assert all(e["response"]["status"].startswith("201") for e in response["entry"])
            created += len(bundle["entry"])
        assert services.store.count(query.SearchQuery("Patient", count=1)) == 3
        assert created > 30
    finally:
        services.close()
