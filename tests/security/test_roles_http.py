"""Roles from a role file through the real HTTP app (setting ``role_file``), on SQLite and
PostgreSQL: a custom role grants exactly what the file says, a file role replaces a built-in
one, and the file decides which roles need a care relationship."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from http_env import FHIR_JSON, Env, bearer, open_env

from medarchive.security.roles import builtin, install

ROLE_FILE = """
[roles.ward_clerk]
description = "Ward clerk: admissions desk, reads patients and their stays"
relationship = false

[[roles.ward_clerk.grants]]
types = ["Patient", "Encounter"]
letters = "rs"

[roles.nurse]
description = "Nurses only read and search here"
relationship = false
grants = [{ types = "*", letters = "rs" }]

[roles.ward_nurse]
description = "A nurse of one ward: needs a relationship with the patient"
extends = "ward_clerk"
relationship = true
"""
BACKENDS = ["sqlite", "postgresql"]


def seed(env: Env) -> None:
    resources: list[dict[str, Any]] = [
        {"resourceType": "Patient", "id": "p1"},
        {"resourceType": "Encounter", "id": "e1", "status": "finished",
         "class": {"code": "AMB"}, "subject": {"reference": "Patient/p1"}},
        {"resourceType": "Observation", "id": "o1", "status": "final",
         "code": {"text": "heart rate"}, "subject": {"reference": "Patient/p1"}}]
    env.services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in resources]})


@pytest.fixture(scope="module", params=BACKENDS)
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        spec: Any) -> Iterator[Env]:
    folder = tmp_path_factory.mktemp(f"roles-{request.param}")
    (folder / "roles.toml").write_text(ROLE_FILE)
    with open_env(request, request.param, folder, spec, role_file=str(folder / "roles.toml"),
                  access_relationship_required=True) as built:
        seed(built)
        yield built
    install(builtin())


@pytest.fixture(scope="module", params=BACKENDS)
def plain(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
          spec: Any) -> Iterator[Env]:
    """The same server without a role file: the built-in roles."""
    with open_env(request, request.param, tmp_path_factory.mktemp("plain"), spec) as built:
        seed(built)
        yield built


def as_role(env: Env, role: str) -> dict[str, str]:
    return bearer(env.token(role=role, scope="user/*.cruds"))


def types_of(bundle: dict[str, Any]) -> list[str]:
    return sorted(e["resource"]["resourceType"] for e in bundle.get("entry", ()))


def test_custom_role_grants_exactly_what_the_file_says(env: Env) -> None:
    clerk = as_role(env, "ward_clerk")
    assert env.client.get("/fhir/Patient/p1", headers=clerk).status_code == 200
    assert env.client.get("/fhir/Encounter/e1", headers=clerk).status_code == 200
    found = env.client.get("/fhir/Encounter?subject=Patient/p1", headers=clerk)
    assert found.status_code == 200 and types_of(found.json()) == ["Encounter"]
    refused = env.client.get("/fhir/Observation/o1", headers=clerk)
    assert refused.status_code == 403
    assert "role ward_clerk" in refused.json()["issue"][0]["diagnostics"]
    assert env.client.get("/fhir/Observation?subject=Patient/p1",
                          headers=clerk).status_code == 403
    created = env.client.post("/fhir/Patient", json={"resourceType": "Patient"},
                              headers={**clerk, "Content-Type": FHIR_JSON})
    assert created.status_code == 403  # rs only: no create


def test_custom_role_searches_are_narrowed(env: Env) -> None:
    clerk = as_role(env, "ward_clerk")
    everything = env.client.get("/fhir/Patient/p1/$everything", headers=clerk)
    assert everything.status_code == 200
    assert types_of(everything.json()) == ["Encounter", "Patient"]  # no Observation
    included = env.client.get("/fhir/Patient?_id=p1&_revinclude=Observation:subject"
                              "&_revinclude=Encounter:subject", headers=clerk)
    assert included.status_code == 200
    assert types_of(included.json()) == ["Encounter", "Patient"]
    assert env.client.get("/fhir/Patient?_has:Observation:subject:status=final",
                          headers=clerk).status_code == 403


def test_file_role_replaces_the_builtin_one(env: Env, plain: Env) -> None:
    observation = {"resourceType": "Observation", "status": "final",
                   "code": {"text": "temperature"}, "subject": {"reference": "Patient/p1"}}
    body = {"Content-Type": FHIR_JSON}
    plain.services.security.access.set_attribute("nurse-1", "department", [])
    built_in = plain.client.post("/fhir/Observation", json=observation,
                                 headers={**as_role(plain, "nurse"), **body})
    assert built_in.status_code == 201  # the built-in nurse creates Observations
    replaced = env.client.post("/fhir/Observation", json=observation,
                               headers={**as_role(env, "nurse"), **body})
    assert replaced.status_code == 403
    # the file's nurse needs no relationship: it reads a patient it has none with
    assert env.client.get("/fhir/Observation/o1", headers=as_role(env, "nurse")).status_code \
        == 200


def test_the_file_decides_who_needs_a_relationship(env: Env) -> None:
    assert env.services.security.guard.abac.relationship_roles == frozenset(
        {"physician", "pharmacist", "ward_nurse"})
    assert env.client.get("/fhir/Patient/p1", headers=as_role(env, "ward_clerk")).status_code \
        == 200
    unrelated = env.client.get("/fhir/Patient/p1", headers=as_role(env, "ward_nurse"))
    assert unrelated.status_code in (403, 404)  # ward_nurse: extends ward_clerk, related only


def test_start_up_logs_the_role_file(request: pytest.FixtureRequest, tmp_path: Path,
                                     spec: Any, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "roles.toml"
    path.write_text(ROLE_FILE)
    import hashlib
    digest = hashlib.sha256(ROLE_FILE.encode()).hexdigest()
    with caplog.at_level(logging.INFO, logger="medarchive.app"), \
            open_env(request, "sqlite", tmp_path, spec, role_file=str(path)):
        pass
    install(builtin())
    assert f"roles: role file {path} (sha256 {digest}): administrator" in caplog.text


def test_a_bad_role_file_stops_the_server(request: pytest.FixtureRequest, tmp_path: Path,
                                          spec: Any) -> None:
    path = tmp_path / "roles.toml"
    path.write_text(ROLE_FILE.replace('letters = "rs"', 'letters = "rw"', 1))
    with pytest.raises(ValueError, match=r"role ward_clerk: grants\[1\]: letters: 'w'"), \
            open_env(request, "sqlite", tmp_path, spec, role_file=str(path)):
        pass
