"""``POST /devices/readings`` on the real app (memory store; the path is backend-neutral)."""

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
def test_batch_endpoint_reports_stored_and_refused(client: TestClient) -> None:
    good = {"device": "MON-1", "kind": "respiratory_rate", "value": 18, "time": T}
    bad = {"device": "MON-1", "kind": "respiratory_rate", "value": "fast", "time": T}
    all_good = client.post("/devices/readings", json={"readings": [good]})
    assert all_good.status_code == 200 and all_good.json() == {"stored": 1, "refused": []}
    mixed = client.post("/devices/readings", json=[good | {"value": 19, "time":
                                                           "2024-05-01T12:01:00Z"}, bad])
    assert mixed.status_code == 207
    assert mixed.json()["refused"][0]["index"] == 1
    none = client.post("/devices/readings", json=[bad])
    assert none.status_code == 422
    assert client.post("/devices/readings", content=b"{not json").status_code == 400


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
