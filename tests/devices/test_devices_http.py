"""``POST /devices/readings`` and ``GET /devices/status`` on the real app."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
from starlette.exceptions import StarletteDeprecationWarning

from medarchive.app import Services, create_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

T = "2024-05-01T12:00:00Z"


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    with TestClient(create_app(services.settings, services=services)) as test_client:
        yield test_client


@pytest.mark.parametrize("database_url", ["memory://"], indirect=False)
def test_batch_endpoint_reports_accepted_and_refused(client: TestClient) -> None:
    good = {"device": "MON-1", "kind": "respiratory_rate", "value": 18, "time": T}
    bad = {"device": "MON-1", "kind": "respiratory_rate", "value": "fast", "time": T}
    all_good = client.post("/devices/readings", json={"readings": [good]})
    assert all_good.status_code == 202
    assert all_good.json() == {"accepted": 1, "duplicates": 0, "refused": []}
    mixed = client.post("/devices/readings", json=[good, bad])
    assert mixed.status_code == 202
    assert mixed.json()["accepted"] == 1 and mixed.json()["duplicates"] == 1
    assert mixed.json()["refused"][0]["index"] == 1
    none = client.post("/devices/readings", json=[bad])
    assert none.status_code == 422
    assert client.post("/devices/readings", content=b"{not json").status_code == 400


def test_accepted_readings_are_durable_and_the_lag_is_reported(client: TestClient,
                                                               services: Services) -> None:
    services.devices.materializer.stop()  # hold materialization to see the lag
    readings = [{"device": "MON-1", "kind": "heart_rate", "value": 60 + i,
                 "time": f"2024-05-01T12:{i:02d}:00Z"} for i in range(5)]
    assert client.post("/devices/readings", json=readings).status_code == 202
    assert services.devices.readings.lag().pending == 5  # committed before the answer
    status = client.get("/devices/status").json()
    assert status["pending"] == 5 and status["oldest_pending_age_s"] >= 0
    services.devices.materializer.drain()
    assert client.get("/devices/status").json() == {"pending": 0,
                                                    "oldest_pending_age_s": None}
    found = client.get("/fhir/Observation", params={"code": "http://loinc.org|8867-4"})
    assert found.status_code == 200 and len(found.json()["entry"]) == 5


def test_endpoint_needs_a_token_when_security_is_on() -> None:
    from medarchive.app import build_services
    from medarchive.settings import Settings

    settings = Settings(database_url="memory://", auth="on")
    services = build_services(settings)
    with TestClient(create_app(settings, services=services)) as secured:
        response = secured.post("/devices/readings", json=[
            {"device": "MON-1", "kind": "spo2", "value": 97, "time": T}])
    assert response.status_code == 401
    assert "Bearer" in response.headers["www-authenticate"]


def test_a_granular_scope_admits_only_readings_whose_observation_matches_it() -> None:
    from medarchive.app import build_services
    from medarchive.settings import Settings

    services = build_services(Settings(database_url="memory://", auth="on"))
    services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
         "resource": {"resourceType": "Patient", "name": [{"family": "Bed"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Device", "identifier": [
            {"system": "urn:medarchive:device", "value": "MON-1"}],
            "patient": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"}},
         "request": {"method": "POST", "url": "Device"}}]})
    category = "http://terminology.hl7.org/CodeSystem/observation-category|"
    reading = {"device": "MON-1", "kind": "spo2", "value": 97, "time": T}
    answers = {}
    with TestClient(create_app(services.settings, services=services)) as secured:
        for name, scope in (("lab", f"system/Observation.c?category={category}laboratory"),
                            ("vitals", f"system/Observation.c?category={category}vital-signs"),
                            ("plain", "system/Observation.c")):
            token = services.security.tokens.issue(f"dev-{name}", kind="client", role="device",
                                                   scope=scope, client_id=f"dev-{name}")
            answers[name] = secured.post(
                "/devices/readings", json=[{**reading, "value": 90 + len(answers)}],
                headers={"Authorization": f"Bearer {token['access_token']}"})
    assert answers["lab"].status_code == 422
    assert "search conditions" in answers["lab"].json()["refused"][0]["reasons"][0]
    assert answers["vitals"].status_code == 202 and answers["vitals"].json()["accepted"] == 1
    assert answers["plain"].status_code == 202 and answers["plain"].json()["accepted"] == 1
    services.close()
