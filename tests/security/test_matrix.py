"""The authorization matrix over HTTP: every role x interaction x relationship cell of
``matrix_cases.EXPECTED`` sent through the real app (bearer tokens from the token service) on
SQLite and PostgreSQL, one loaded database per backend for the whole module.

Read-only cells look at shared resources nobody writes; every write cell has an Observation of
its own (``cell_id``), so the cells can run in any order.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from http_env import FHIR_JSON, Env, bearer, open_env
from matrix_cases import (
    ACTORS,
    DEPARTMENT,
    EXPECTED,
    GLASS,
    INTERACTIONS,
    OTHER,
    OWN,
    RELATIONSHIP_ROLES,
    RELATIONSHIPS,
    WRITES,
    cell_id,
    cells,
    label,
    read_obs,
    target,
)

from medarchive.security.authz import ROLES

CELL = "urn:cell"
JSON_PATCH = "application/json-patch+json"
SEEN = ("search", "history-instance", "history-type", "everything", "compartment", "include",
        "revinclude", "count")


def observation(id: str | None, rel: str) -> dict[str, Any]:
    """An Observation of the relationship's patient, labelled as the relationship says."""
    body: dict[str, Any] = {"resourceType": "Observation", "status": "final",
                            "code": {"text": "heart rate"},
                            "subject": {"reference": f"Patient/{target(rel)}"}}
    if id is not None:
        body["id"] = id
        body["identifier"] = [{"system": CELL, "value": id}]
    if label(rel) is not None:
        system, code = label(rel)  # type: ignore[misc]
        body["meta"] = {"security": [{"system": system, "code": code}]}
    return body


def seed(env: Env) -> None:
    """Three patients, one shared Observation each (and a labelled one of p1), one Observation
    per write cell, p1's current Encounter in the relationship roles' department, and their
    break-the-glass grants on p3."""
    patients = (OWN, OTHER, GLASS)
    resources: list[dict[str, Any]] = [{"resourceType": "Patient", "id": p} for p in patients]
    resources += [observation(read_obs(rel), rel) for rel in ("own", "other", "labelled",
                                                                "glass")]
    resources += [observation(cell_id(role, interaction, rel), rel)
                  for role in ACTORS for interaction in WRITES for rel in RELATIONSHIPS
                  if rel != "audit"]
    resources += [{"resourceType": "Organization", "id": DEPARTMENT, "name": "Ward A"},
                  {"resourceType": "Encounter", "id": "enc-p1", "status": "in-progress",
                   "class": {"code": "IMP"}, "subject": {"reference": f"Patient/{OWN}"},
                   "serviceProvider": {"reference": f"Organization/{DEPARTMENT}"}}]
    env.services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in resources]})
    access = env.services.security.access
    for role in RELATIONSHIP_ROLES:
        access.set_attribute(f"{role}-1", "department", [DEPARTMENT])
        access.break_glass(f"{role}-1", role, GLASS, "unconscious patient in the emergency "
                           "room, no relationship yet", minutes=24 * 60)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        spec: Any) -> Iterator[Env]:
    folder = tmp_path_factory.mktemp(f"matrix-{request.param}")
    with open_env(request, request.param, folder, spec, max_page_size=1000,
                  access_relationship_required=True) as built:  # the production default
        seed(built)
        admin = built.token(role="administrator", scope="user/*.cruds")
        assert built.client.get(f"/fhir/Patient/{OWN}", headers=bearer(admin)).status_code \
            == 200  # AuditEvent record 1 exists from here on
        yield built


@pytest.fixture(scope="module")
def tokens(env: Env) -> dict[str, str]:
    return {role: env.token(role=role, scope=actor.scope, kind=actor.kind,
                            patient=actor.patient) for role, actor in ACTORS.items()}


def _ids(bundle: dict[str, Any], mode: str | None = None) -> set[str]:
    found = set()
    for entry in bundle.get("entry") or ():
        if mode is not None and (entry.get("search") or {}).get("mode") != mode:
            continue
        resource = entry.get("resource") or {}
        found.add(f"{resource.get('resourceType')}/{resource.get('id')}")
    return found


def _audit_request(interaction: str) -> tuple[str, str, dict[str, str], Any]:
    """(method, path, extra headers, JSON body) on the audit trail's AuditEvents."""
    event = {"resourceType": "AuditEvent", "type": {"code": "rest"}, "recorded":
             "2026-01-01T00:00:00Z", "agent": [{"requestor": True}], "source": {
             "observer": {"display": "x"}}}
    return {
        "read": ("GET", "AuditEvent/1", {}, None),
        "vread": ("GET", "AuditEvent/1/_history/1", {}, None),
        "search": ("GET", "AuditEvent?_count=5", {}, None),
        "history-instance": ("GET", "AuditEvent/1/_history", {}, None),
        "history-type": ("GET", "AuditEvent/_history", {}, None),
        "create": ("POST", "AuditEvent", {}, event),
        "update": ("PUT", "AuditEvent/1", {}, {**event, "id": "1"}),
        "patch": ("PATCH", "AuditEvent/1", {"content-type": JSON_PATCH},
                  [{"op": "replace", "path": "/outcome", "value": "0"}]),
        "delete": ("DELETE", "AuditEvent/1", {}, None),
        "cond-create": ("POST", "AuditEvent", {"If-None-Exist": "action=E"}, event),
        "cond-update": ("PUT", "AuditEvent?action=E", {}, event),
        "cond-delete": ("DELETE", "AuditEvent?action=E", {}, None),
        "transaction": ("POST", "", {}, {"resourceType": "Bundle", "type": "transaction",
                                         "entry": [{"resource": {**event, "id": "1"}, "request": {
                                             "method": "PUT", "url": "AuditEvent/1"}}]}),
        "batch": ("POST", "", {}, {"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": "AuditEvent/1"}}]}),
        "include": ("GET", "AuditEvent?_include=AuditEvent:agent", {}, None),
        "count": ("GET", "AuditEvent?_summary=count", {}, None),
    }[interaction]


def _clinical_request(role: str, interaction: str,
                      rel: str) -> tuple[str, str, dict[str, str], Any]:
    """(method, path, extra headers, JSON body) on a patient's Observation."""
    patient, shared, own = str(target(rel)), read_obs(rel), cell_id(role, interaction, rel)
    mine = f"identifier={CELL}|{own}"
    return {
        "read": ("GET", f"Observation/{shared}", {}, None),
        "vread": ("GET", f"Observation/{shared}/_history/1", {}, None),
        "search": ("GET", f"Observation?_id={shared}", {}, None),
        "history-instance": ("GET", f"Observation/{shared}/_history", {}, None),
        "history-type": ("GET", "Observation/_history?_count=1000", {}, None),
        "create": ("POST", "Observation", {}, observation(None, rel)),
        "update": ("PUT", f"Observation/{own}", {}, observation(own, rel)),
        "patch": ("PATCH", f"Observation/{own}", {"content-type": JSON_PATCH},
                  [{"op": "replace", "path": "/status", "value": "amended"}]),
        "delete": ("DELETE", f"Observation/{own}", {}, None),
        "cond-create": ("POST", "Observation", {"If-None-Exist": mine},
                        observation(None, rel)),
        "cond-update": ("PUT", f"Observation?{mine}", {}, observation(None, rel)),
        "cond-delete": ("DELETE", f"Observation?{mine}", {}, None),
        "transaction": ("POST", "", {}, {"resourceType": "Bundle", "type": "transaction",
                                         "entry": [{"resource": observation(own, rel),
                                                    "request": {"method": "PUT",
                                                                "url": f"Observation/{own}"}}]}),
        "batch": ("POST", "", {}, {"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": f"Observation/{shared}"}}]}),
        "everything": ("GET", f"Patient/{patient}/$everything?_count=1000", {}, None),
        "compartment": ("GET", f"Patient/{patient}/Observation?_id={shared}", {}, None),
        "include": ("GET", f"Observation?_id={shared}&_include=Observation:subject", {}, None),
        "revinclude": ("GET", f"Patient?_id={patient}&_revinclude=Observation:subject", {},
                       None),
        "count": ("GET", f"Observation?_id={shared}&_summary=count", {}, None),
    }[interaction]


def _seen(interaction: str, rel: str, body: dict[str, Any]) -> bool:
    """Whether the cell's target shows in a 200 result."""
    if interaction == "count":
        return int(body.get("total", 0)) > 0
    if rel == "audit":
        return bool(body.get("entry"))
    shared, patient = f"Observation/{read_obs(rel)}", f"Patient/{target(rel)}"
    if interaction == "include":
        return patient in _ids(body, "include")
    if interaction == "revinclude":
        return shared in _ids(body, "include")
    return shared in _ids(body)


def outcome(env: Env, token: str, role: str, interaction: str, rel: str) -> str:
    """Send one cell's request and describe the answer in the table's vocabulary."""
    method, path, extra, body = (_audit_request(interaction) if rel == "audit"
                                 else _clinical_request(role, interaction, rel))
    headers = bearer(token, **{"content-type": FHIR_JSON, **extra})
    response = env.client.request(method, f"/fhir/{path}".rstrip("/"), headers=headers,
                                  json=body)
    found = response.json() if response.content else {}
    if interaction == "batch" and response.status_code == 200:
        return str(found["entry"][0]["response"]["status"])[:3]
    if interaction in SEEN and response.status_code == 200:
        return "200" + ("+" if _seen(interaction, rel, found) else "-")
    return str(response.status_code)


def test_table_is_complete() -> None:
    assert set(EXPECTED) == set(ACTORS) == set(ROLES) - {"system"}
    for role, row in EXPECTED.items():
        assert tuple(row) == INTERACTIONS or set(row) == set(INTERACTIONS), role
        assert all(len(row[i]) == len(RELATIONSHIPS) for i in INTERACTIONS), role


@pytest.mark.parametrize(("role", "interaction", "rel", "expected"), cells(),
                         ids=["-".join(cell[:3]) for cell in cells()])
def test_cell(env: Env, tokens: dict[str, str], role: str, interaction: str, rel: str,
              expected: str) -> None:
    assert outcome(env, tokens[role], role, interaction, rel) == expected


def test_matrix_tokens_are_what_login_issues(env: Env) -> None:
    """The tokens above have the claims a real login gives users of those roles."""
    from medarchive.security.accounts import Accounts
    accounts: Accounts = env.services.security.accounts
    for role in ("physician", "patient"):
        spec = ACTORS[role]
        accounts.add_user(f"login-{role}", role, "a long enough passphrase",
                          patient_id=spec.patient)
        response = env.client.post("/auth/login", data={
            "username": f"login-{role}", "password": "a long enough passphrase"})
        assert response.status_code == 200, response.text
        claims = env.services.security.tokens.verify(response.json()["access_token"])
        assert (claims["scope"], claims.get("patient"), claims["role"]) == (
            spec.scope, spec.patient, role)
