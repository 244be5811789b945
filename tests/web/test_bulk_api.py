"""Bulk Data export over HTTP (Bulk Data Access IG 2.0): kick-off, polling, manifest, files,
cancel, ``_type``/``_since``/``_typeFilter``, Group export, restart, and security.

Jobs run synchronously (``bulk_workers=0``; the test calls ``run_pending``), so nothing here
waits on a thread.
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.exceptions import StarletteDeprecationWarning

from medarchive.app import Services, build_services, create_app
from medarchive.settings import Settings
from medarchive.store.base import Store

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

ASYNC = {"Prefer": "respond-async", "Accept": "application/fhir+json"}
JSON = {"content-type": "application/fhir+json"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url="memory://", base_url="http://testserver", auth="off",
                    bulk_dir=str(tmp_path / "bulk"), bulk_workers=0)


@pytest.fixture
def bulk_client(store: Store, make_client: Any, settings: Settings) -> Iterator[TestClient]:
    client = make_client(store, settings)
    yield client
    client.app.state.services.bulk.close()


def put(client: TestClient, resource: dict[str, Any]) -> dict[str, Any]:
    response = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", headers=JSON,
                          content=orjson.dumps(resource))
    assert response.status_code in (200, 201), response.text
    return dict(response.json())


def seed(client: TestClient) -> None:
    for pid in ("p1", "p2", "p3"):
        put(client, {"resourceType": "Patient", "id": pid, "gender": "female"})
    for pid in ("p1", "p2", "p3"):
        for n in range(2):
            put(client, {"resourceType": "Observation", "id": f"o-{pid}-{n}",
                         "status": "final" if n == 0 else "preliminary",
                         "code": {"text": "hr"}, "subject": {"reference": f"Patient/{pid}"}})
    put(client, {"resourceType": "Practitioner", "id": "dr"})


def export(client: TestClient, path: str, headers: dict[str, str] | None = None
           ) -> dict[str, Any]:
    """Kick off, check the in-progress answer, run the job, return the manifest."""
    kickoff = client.get(path, headers={**ASYNC, **(headers or {})})
    assert kickoff.status_code == 202, kickoff.text
    status_url = kickoff.headers["content-location"]
    waiting = client.get(status_url, headers=headers)
    assert waiting.status_code == 202
    assert waiting.headers["retry-after"] and "%" in waiting.headers["x-progress"]
    assert client.app.state.services.bulk.run_pending()
    done = client.get(status_url, headers=headers)
    assert done.status_code == 200, done.text
    manifest = dict(done.json())
    manifest["status_url"] = status_url
    return manifest


def files(client: TestClient, manifest: dict[str, Any],
          headers: dict[str, str] | None = None) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for item in manifest["output"]:
        response = client.get(item["url"], headers=headers)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/fhir+ndjson")
        lines = [orjson.loads(line) for line in response.content.splitlines()]
        assert len(lines) == item["count"]
        found[item["type"]] = lines
    return found


def test_system_export_current_versions_once(bulk_client: TestClient) -> None:
    seed(bulk_client)
    put(bulk_client, {"resourceType": "Patient", "id": "p1", "gender": "male"})
    assert bulk_client.delete("/fhir/Practitioner/dr").status_code in (200, 204)
    manifest = export(bulk_client, "/fhir/$export")
    assert manifest["requiresAccessToken"] is False and manifest["error"] == []
    assert manifest["request"].endswith("/fhir/$export")
    assert manifest["transactionTime"].endswith("Z")
    found = files(bulk_client, manifest)
    assert set(found) == {"Patient", "Observation"}  # the deleted Practitioner is gone
    patients = {p["id"]: p for p in found["Patient"]}
    assert sorted(patients) == ["p1", "p2", "p3"]
    assert patients["p1"]["gender"] == "male" and patients["p1"]["meta"]["versionId"] == "2"
    assert len(found["Observation"]) == 6


def test_changes_after_kickoff_are_not_exported(bulk_client: TestClient) -> None:
    seed(bulk_client)
    kickoff = bulk_client.get("/fhir/$export?_type=Patient", headers=ASYNC)
    put(bulk_client, {"resourceType": "Patient", "id": "p4"})
    put(bulk_client, {"resourceType": "Patient", "id": "p2", "gender": "other"})
    assert bulk_client.app.state.services.bulk.run_pending()
    manifest = bulk_client.get(kickoff.headers["content-location"]).json()
    ids = [p["id"] for p in files(bulk_client, manifest)["Patient"]]
    assert sorted(ids) == ["p1", "p3"]  # p4 is newer; p2 changed after transactionTime


def test_type_since_and_type_filter(bulk_client: TestClient) -> None:
    seed(bulk_client)
    manifest = export(bulk_client, "/fhir/$export?_type=Observation,Patient"
                      "&_typeFilter=Observation%3Fstatus%3Dfinal"
                      "&_outputFormat=application/fhir%2Bndjson")
    found = files(bulk_client, manifest)
    assert sorted(found) == ["Observation", "Patient"]
    assert {o["id"] for o in found["Observation"]} == {"o-p1-0", "o-p2-0", "o-p3-0"}
    since = bulk_client.get("/fhir/Observation/o-p3-0").json()["meta"]["lastUpdated"]
    later = files(bulk_client, export(bulk_client, f"/fhir/$export?_since={since}"))
    assert {r["id"] for rows in later.values() for r in rows} == {"o-p3-0", "o-p3-1", "dr"}


def test_group_and_patient_exports(bulk_client: TestClient) -> None:
    seed(bulk_client)
    put(bulk_client, {"resourceType": "Group", "id": "g", "type": "person", "actual": True,
                      "member": [{"entity": {"reference": "Patient/p1"}},
                                 {"entity": {"reference": "Patient/p3"}}]})
    found = files(bulk_client, export(bulk_client, "/fhir/Group/g/$export"))
    assert sorted(p["id"] for p in found["Patient"]) == ["p1", "p3"]
    assert sorted(o["id"] for o in found["Observation"]) == [
        "o-p1-0", "o-p1-1", "o-p3-0", "o-p3-1"]
    assert "Practitioner" not in found  # the Group itself is in its members' compartment
    everyone = files(bulk_client, export(bulk_client, "/fhir/Patient/$export"))
    assert len(everyone["Patient"]) == 3 and "Practitioner" not in everyone
    missing = bulk_client.get("/fhir/Group/nope/$export", headers=ASYNC)
    assert missing.status_code == 404


@pytest.mark.parametrize(("path", "headers", "status"), [
    ("/fhir/$export", {"Accept": "application/fhir+json"}, 400),  # no Prefer: respond-async
    ("/fhir/$export?_type=Nonsense", ASYNC, 400),
    ("/fhir/$export?_outputFormat=text/csv", ASYNC, 400),
    ("/fhir/$export?_since=yesterday", ASYNC, 400),
    ("/fhir/$export?_elements=id", ASYNC, 400),
    ("/fhir/$export?_type=Patient&_typeFilter=Observation%3Fstatus%3Dfinal", ASYNC, 400),
    ("/fhir/$export?_typeFilter=Observation%3Fnonsense%3D1", ASYNC, 400),
    ("/fhir/Patient/$export?_type=Practitioner", ASYNC, 400),
    ("/fhir/Observation/$export", ASYNC, 404),
    ("/fhir/$export", {**ASYNC, "Accept": "text/html"}, 400),
])
def test_bad_kickoffs(memory_client: TestClient, path: str, headers: dict[str, str],
                      status: int) -> None:
    response = memory_client.get(path, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


def test_cancel_and_delete(bulk_client: TestClient) -> None:
    seed(bulk_client)
    kickoff = bulk_client.get("/fhir/$export", headers=ASYNC)
    url = kickoff.headers["content-location"]
    assert bulk_client.delete(url).status_code == 202
    assert bulk_client.get(url).status_code == 404
    assert not bulk_client.app.state.services.bulk.run_pending()  # nothing left to run
    manifest = export(bulk_client, "/fhir/$export")
    file_url = manifest["output"][0]["url"]
    assert bulk_client.delete(manifest["status_url"]).status_code == 202
    assert bulk_client.get(manifest["status_url"]).status_code == 404
    assert bulk_client.get(file_url).status_code == 404
    assert bulk_client.get(file_url.rsplit("/", 1)[0] + "/..%2F..%2Fetc").status_code == 404


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_job_survives_restart(database_url: str, store: Store, make_client: Any,
                              settings: Settings) -> None:
    """Jobs live in the database (the in-memory store keeps none across restarts)."""
    first = make_client(store, settings)
    seed(first)
    url = first.get("/fhir/$export", headers=ASYNC).headers["content-location"]
    first.app.state.services.bulk.close()  # the server stops before running it
    second = make_client(store, settings)
    assert second.get(url).status_code == 202
    assert second.app.state.services.bulk.run_pending()
    manifest = second.get(url).json()
    assert sum(o["count"] for o in manifest["output"]) == 10
    second.app.state.services.bulk.close()


def test_worker_thread_runs_jobs(store: Store, make_client: Any, settings: Settings) -> None:
    client = make_client(store, dataclasses.replace(settings, bulk_workers=1))
    try:
        seed(client)
        url = client.get("/fhir/$export?_type=Patient", headers=ASYNC).headers[
            "content-location"]
        for _ in range(600):  # the worker wakes on kick-off; poll as a client would
            response = client.get(url)
            if response.status_code == 200:
                break
            import time
            time.sleep(0.05)
        assert response.status_code == 200
        assert response.json()["output"][0]["count"] == 3
    finally:
        client.app.state.services.bulk.close()


# -- security on ----------------------------------------------------------------------------

FORM = {"content-type": "application/x-www-form-urlencoded"}


@pytest.fixture
def secure(database_url: str, store: Store, spec: Any, tmp_path: Path
           ) -> Iterator[tuple[TestClient, Services]]:
    numbers = itertools.count(1)
    built = build_services(Settings(database_url=database_url, base_url="http://testserver",
                                    bulk_dir=str(tmp_path / "bulk"), bulk_workers=0),
                           store=store, spec=spec, validator=None,
                           new_id=lambda: f"id-{next(numbers)}")
    built.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": pid},
         "request": {"method": "PUT", "url": f"Patient/{pid}"}} for pid in ("p1", "p2")]})
    client = TestClient(create_app(built.settings, services=built),
                        raise_server_exceptions=False)
    yield client, built
    built.close()


def token(client: TestClient, services: Services, scope: str) -> dict[str, str]:
    info, secret = services.security.accounts.add_client("app", scope)
    response = client.post("/auth/token", headers=FORM, data={
        "grant_type": "client_credentials", "scope": scope, "client_id": info.client_id,
        "client_secret": secret})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_export_needs_the_owner_and_is_audited(secure: tuple[TestClient, Services]) -> None:
    client, services = secure
    owner = token(client, services, "system/*.rs")
    other = token(client, services, "system/*.rs")
    assert client.get("/fhir/$export", headers=ASYNC).status_code == 401
    kickoff = client.get("/fhir/$export", headers={**ASYNC, **owner})
    url = kickoff.headers["content-location"]
    assert client.get(url).status_code == 401
    assert client.get(url, headers=other).status_code == 403
    assert services.bulk.run_pending()
    manifest = client.get(url, headers=owner).json()
    assert manifest["requiresAccessToken"] is True
    item = manifest["output"][0]
    assert client.get(item["url"], headers=other).status_code == 403
    assert client.get(item["url"], headers=owner).content.count(b"\n") == 2
    details = [e.get("outcomeDesc", "") for _, e in services.security.trail.events(limit=1000)]
    assert any("completed" in d and "results=2" in d for d in details)
    assert any("file Patient.ndjson" in d for d in details)
    narrow = token(client, services, "system/Observation.rs")
    assert client.get("/fhir/$export?_type=Patient",
                      headers={**ASYNC, **narrow}).status_code == 403
