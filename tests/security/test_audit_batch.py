"""An AuditEvent search inside a batch is answered from the trail like a direct search (the
audit finding: ``GET AuditEvent?_summary=count`` in a batch gave total 0 while a direct search
gave 19), authorized and audited the same way; SQLite and PostgreSQL over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from http_env import Env, bearer, open_env


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path: Path, spec: Any) -> Iterator[Env]:
    with open_env(request, request.param, tmp_path, spec) as built:
        built.services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1"},
             "request": {"method": "PUT", "url": "Patient/p1"}}]})
        yield built


def batch(env: Env, token: str, *urls: str, method: str = "GET") -> list[dict[str, Any]]:
    body = {"resourceType": "Bundle", "type": "batch",
            "entry": [{"request": {"method": method, "url": url}} for url in urls]}
    response = env.client.post("/fhir", json=body, headers=bearer(
        token, **{"content-type": "application/fhir+json"}))
    assert response.status_code == 200, response.text
    return list(response.json()["entry"])


def test_batch_audit_searches_match_direct_ones(env: Env) -> None:
    physician = env.token(role="physician", scope="user/*.cruds")
    for _ in range(3):
        assert env.client.get("/fhir/Patient/p1", headers=bearer(physician)).status_code == 200
    auditor = env.token(role="auditor", scope="user/AuditEvent.rs")
    direct = env.client.get("/fhir/AuditEvent?_summary=count", headers=bearer(auditor)).json()
    assert direct["total"] >= 3
    counted, page = batch(env, auditor, "AuditEvent?_summary=count",
                          "AuditEvent?subtype=read&_count=2")
    assert counted["response"]["status"].startswith("200")
    assert counted["resource"]["total"] == direct["total"] + 1  # the direct search's own event
    reads = page["resource"]["entry"]
    assert len(reads) == 2 and all(e["resource"]["subtype"][0]["code"] == "read" for e in reads)
    assert page["resource"]["link"][-1]["relation"] == "next"
    searches = [e for e in env.events() if e["subtype"][0]["code"] == "search"
                and any(x.get("description", "").startswith("_summary=count")
                        or "subtype=read" in x.get("description", "")
                        for x in e.get("entity", ()))]
    assert len(searches) == 2 and all(e["outcome"] == "0" for e in searches)


def test_batch_audit_searches_need_the_auditor(env: Env) -> None:
    for role, scope, patient in (("physician", "user/*.cruds", None),
                                 ("patient", "patient/*.rs", "p1")):
        token = env.token(role=role, scope=scope, patient=patient)
        [entry] = batch(env, token, "AuditEvent?_summary=count")
        assert entry["response"]["status"].startswith("403"), entry
    auditor = env.token(role="auditor", scope="user/AuditEvent.rs")
    [bad] = batch(env, auditor, "AuditEvent?nonsense=1")
    assert bad["response"]["status"].startswith("400")
    refused = [e for e in env.events() if e["subtype"][0]["code"] == "search"]
    assert [e["outcome"] for e in refused] == ["4", "4", "4"]
