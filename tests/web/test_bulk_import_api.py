"""Bulk Data ``$import`` over HTTP (import draft, ping and pull): a Parameters kick-off, 202 and
status polling, the manifest with per-input counts and OperationOutcome error files, inputs from
``file://`` below the import folder and from allowed ``http://`` prefixes (a server on
127.0.0.1), and refusals of everything else (the SSRF guard).

Jobs run synchronously (``bulk_workers=0``; the test calls ``run_pending``).
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from starlette.exceptions import StarletteDeprecationWarning

from medarchive.settings import Settings
from medarchive.store.base import Store

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

KICKOFF = {"Prefer": "respond-async", "Content-Type": "application/fhir+json"}
PATIENTS = [{"resourceType": "Patient", "id": "p1", "gender": "female"},
            {"resourceType": "Patient", "id": "p2", "gender": "nonsense"},
            {"resourceType": "Patient", "id": "6f0c1c3e-0000-4000-8000-000000000001"}]
OBSERVATIONS = [{"resourceType": "Observation", "id": "o1", "status": "final",
                 "code": {"text": "hr"}, "subject": {"reference": "Patient/p1"}},
                {"resourceType": "Observation", "id": "o2", "status": "final",
                 "code": {"text": "hr"}, "subject": {
                     "reference": "urn:uuid:6f0c1c3e-0000-4000-8000-000000000001"}}]


def ndjson(resources: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in resources)


def parameters(*inputs: tuple[str, str], fmt: str = "application/fhir+ndjson") -> bytes:
    return orjson.dumps({"resourceType": "Parameters", "parameter": [
        {"name": "inputFormat", "valueCode": fmt},
        *({"name": "input", "part": [{"name": "type", "valueCode": rtype},
                                     {"name": "url", "valueUri": url}]}
          for rtype, url in inputs)]})


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No request log on stderr."""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    """A plain HTTP server on 127.0.0.1 serving ``tmp_path/web``; yields its base URL."""
    root = tmp_path / "web"
    (root / "ok").mkdir(parents=True)
    (root / "secret").mkdir()
    (root / "ok" / "Observation.ndjson").write_bytes(ndjson(OBSERVATIONS))
    (root / "secret" / "Patient.ndjson").write_bytes(ndjson(PATIENTS[:1]))
    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def importing(store: Store, make_client: Any, tmp_path: Path, served: str
              ) -> Iterator[TestClient]:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "Patient.ndjson").write_bytes(ndjson(PATIENTS))
    (tmp_path / "outside.ndjson").write_bytes(ndjson(PATIENTS[:1]))
    settings = Settings(database_url="memory://", base_url="http://testserver", auth="off",
                        bulk_dir=str(tmp_path / "bulk"), bulk_workers=0,
                        bulk_import_dir=str(folder), bulk_import_urls=f"{served}/ok/")
    client = make_client(store, settings)
    yield client
    client.app.state.services.bulk.close()


def run(client: TestClient, body: bytes) -> dict[str, Any]:
    kickoff = client.post("/fhir/$import", headers=KICKOFF, content=body)
    assert kickoff.status_code == 202, kickoff.text
    url = kickoff.headers["content-location"]
    waiting = client.get(url)
    assert waiting.status_code == 202 and "%" in waiting.headers["x-progress"]
    assert client.app.state.services.bulk.run_pending()
    done = client.get(url)
    assert done.status_code == 200, done.text
    return dict(done.json())


def test_import_from_file_and_http(importing: TestClient, tmp_path: Path, served: str) -> None:
    body = parameters(("Patient", (tmp_path / "in" / "Patient.ndjson").as_uri()),
                      ("Observation", f"{served}/ok/Observation.ndjson"))
    manifest = run(importing, body)
    counts = {o["type"]: (o["count"], o["refused"]) for o in manifest["output"]}
    assert counts == {"Patient": (2, 1), "Observation": (2, 0)}
    [error] = manifest["error"]
    assert error["type"] == "OperationOutcome" and error["count"] == 1
    lines = importing.get(error["url"]).content.splitlines()
    outcome = orjson.loads(lines[0])
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["diagnostics"].startswith("line 2")
    assert outcome["issue"][0]["details"]["text"].endswith("in/Patient.ndjson")
    found = importing.get("/fhir/Observation?subject=Patient/6f0c1c3e-0000-4000-8000-"
                          "000000000001").json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == ["o2"]  # urn resolved
    assert importing.get("/fhir/Patient/p1").json()["meta"]["versionId"] == "1"
    again = run(importing, body)  # another job: new versions, nothing duplicated
    assert {o["type"]: o["count"] for o in again["output"]} == {"Patient": 2, "Observation": 2}
    assert importing.get("/fhir/Patient/p1").json()["meta"]["versionId"] == "2"


@pytest.mark.parametrize("url", [
    "file:///etc/passwd",
    "{tmp}/outside.ndjson",
    "{tmp}/in/../outside.ndjson",
    "{served}/secret/Patient.ndjson",
    "{served}/ok/../secret/Patient.ndjson",
    "{served}/ok%2F..%2Fsecret/Patient.ndjson",
    "{served}@evil.example/ok/Observation.ndjson",
    "http://169.254.169.254/latest/meta-data/",
])
def test_inputs_outside_the_policy_are_refused(importing: TestClient, tmp_path: Path,
                                               served: str, url: str) -> None:
    url = url.format(tmp=tmp_path.as_uri(), served=served)
    response = importing.post("/fhir/$import", headers=KICKOFF,
                              content=parameters(("Patient", url)))
    assert response.status_code == 403, response.text
    assert not importing.app.state.services.bulk.run_pending()


@pytest.mark.parametrize(("body", "headers", "status"), [
    (parameters(("Patient", "ftp://x/y")), KICKOFF, 400),
    (parameters(("Nonsense", "file:///x")), KICKOFF, 400),
    (parameters(("Patient", "file:///x"), fmt="text/csv"), KICKOFF, 400),
    (parameters(), KICKOFF, 400),
    (b"{", KICKOFF, 400),
    (orjson.dumps({"resourceType": "Patient"}), KICKOFF, 400),
    (parameters(("Patient", "file:///x")), {"Content-Type": "application/fhir+json"}, 400),
])
def test_bad_kickoffs(importing: TestClient, body: bytes, headers: dict[str, str],
                      status: int) -> None:
    response = importing.post("/fhir/$import", headers=headers, content=body)
    assert response.status_code == status, response.text
    assert response.json()["resourceType"] == "OperationOutcome"


def test_a_missing_input_fails_the_job(importing: TestClient, tmp_path: Path,
                                       served: str) -> None:
    body = parameters(("Observation", f"{served}/ok/missing.ndjson"))
    url = importing.post("/fhir/$import", headers=KICKOFF,
                         content=body).headers["content-location"]
    assert importing.app.state.services.bulk.run_pending()
    failed = importing.get(url)
    assert failed.status_code == 500 and "404" in failed.text


def test_no_file_inputs_without_an_import_folder(store: Store, make_client: Any,
                                                 tmp_path: Path) -> None:
    settings = Settings(database_url="memory://", auth="off", bulk_dir=str(tmp_path / "b"),
                        bulk_workers=0)
    client = make_client(store, dataclasses.replace(settings, bulk_import_dir=""))
    (tmp_path / "Patient.ndjson").write_bytes(ndjson(PATIENTS[:1]))
    response = client.post("/fhir/$import", headers=KICKOFF, content=parameters(
        ("Patient", (tmp_path / "Patient.ndjson").as_uri())))
    assert response.status_code == 403
    client.app.state.services.bulk.close()


def test_import_is_audited_per_file_and_owned(database_url: str, store: Store, spec: Any,
                                              tmp_path: Path) -> None:
    from medarchive.app import build_services, create_app
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "Patient.ndjson").write_bytes(ndjson(PATIENTS))
    built = build_services(Settings(database_url=database_url, base_url="http://testserver",
                                    bulk_dir=str(tmp_path / "bulk"), bulk_workers=0,
                                    bulk_import_dir=str(folder)),
                           store=store, spec=spec, validator=None)
    client = TestClient(create_app(built.settings, services=built),
                        raise_server_exceptions=False)
    try:
        headers = []
        for scope in ("system/*.cruds", "system/*.cruds", "system/*.rs"):
            info, secret = built.security.accounts.add_client("app", scope)
            answer = client.post("/auth/token", data={
                "grant_type": "client_credentials", "scope": scope,
                "client_id": info.client_id, "client_secret": secret})
            headers.append({"Authorization": f"Bearer {answer.json()['access_token']}"})
        owner, other, reader = headers
        body = parameters(("Patient", (folder / "Patient.ndjson").as_uri()))
        assert client.post("/fhir/$import", headers=KICKOFF, content=body).status_code == 401
        url = client.post("/fhir/$import", headers={**KICKOFF, **owner},
                          content=body).headers["content-location"]
        assert client.get(url, headers=other).status_code == 403
        assert built.bulk.run_pending()
        manifest = client.get(url, headers=owner).json()
        assert manifest["requiresAccessToken"] is True
        assert manifest["output"][0]["count"] == 3  # no validator injected: p2 is stored
        details = [e.get("outcomeDesc", "") for _, e in built.security.trail.events(limit=100)]
        assert sum("bulk import" in d and "3 stored" in d for d in details) == 1
        denied = client.post("/fhir/$import", headers={**KICKOFF, **reader}, content=body)
        assert denied.status_code == 403 and not built.bulk.run_pending()
    finally:
        built.close()
