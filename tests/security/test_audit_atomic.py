"""A write and its AuditEvent commit in one transaction, on SQLite and PostgreSQL: when the
audit row cannot be written (a trigger on ``audit_event`` refuses it, standing in for a full
disk or a broken table) the create, update, patch, delete or transaction is not stored and the
client gets 500; when it can, exactly one AuditEvent names the change and its patient."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from http_env import Env, bearer, open_env

from audit_down import REFUSE


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path: Path, spec: Any) -> Iterator[Env]:
    with open_env(request, request.param, tmp_path, spec) as built:
        built.services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1"},
             "request": {"method": "PUT", "url": "Patient/p1"}},
            {"resource": {"resourceType": "Observation", "id": "o1", "status": "final",
                          "code": {"text": "hr"}, "subject": {"reference": "Patient/p1"}},
             "request": {"method": "PUT", "url": "Observation/o1"}}]})
        yield built


def _execute(env: Env, statements: list[str]) -> None:
    db = env.services.security.db
    with db.writing() as cur:
        for statement in statements:
            cur.execute(statement)


def _audit_down(env: Env) -> None:
    dialect = env.services.security.db.dialect
    _execute(env, REFUSE[dialect])


def _audit_up(env: Env) -> None:
    _execute(env, ["DROP TRIGGER audit_down" if env.services.security.db.dialect == "sqlite"
                   else "DROP TRIGGER audit_down ON audit_event"])


def _obs(status: str = "final") -> dict[str, Any]:
    return {"resourceType": "Observation", "status": status, "code": {"text": "hr"},
            "subject": {"reference": "Patient/p1"}}


def _state(env: Env) -> tuple[int, int, int]:
    """(last change seq, audit records, current version of Observation/o1)."""
    store = env.services.store
    current = store.read("Observation", "o1")
    return store.last_seq(), len(env.events()), current.version_id if current else 0


def test_no_audit_no_write(env: Env) -> None:
    admin = bearer(env.token(role="administrator", scope="user/*.cruds"))
    before = _state(env)
    _audit_down(env)
    patch = [{"op": "replace", "path": "/status", "value": "amended"}]
    attempts = [
        env.client.post("/fhir/Observation", headers=admin, json=_obs()),
        env.client.put("/fhir/Observation/o1", headers=admin, json={**_obs("amended"),
                                                                      "id": "o1"}),
        env.client.put("/fhir/Observation/new", headers=admin, json={**_obs(), "id": "new"}),
        env.client.patch("/fhir/Observation/o1", headers={
            **admin, "Content-Type": "application/json-patch+json"}, content=str(patch)
            .replace("'", '"')),
        env.client.delete("/fhir/Observation/o1", headers=admin),
        env.client.post("/fhir", headers=admin, json={
            "resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": _obs(), "request": {"method": "POST", "url": "Observation"}}]}),
    ]
    assert [r.status_code for r in attempts] == [500] * len(attempts)
    assert all(r.json()["resourceType"] == "OperationOutcome" for r in attempts)
    _audit_up(env)
    assert _state(env) == before  # nothing stored, nothing audited
    assert env.services.store.read("Observation", "new") is None
    assert env.services.security.trail.verify()[1] is None


def test_each_write_is_audited_once_in_its_transaction(env: Env) -> None:
    admin = bearer(env.token(role="administrator", scope="user/*.cruds"))
    start = len(env.events())
    created = env.client.post("/fhir/Observation", headers=admin, json=_obs())
    assert created.status_code == 201
    new_id = created.json()["id"]
    assert env.client.delete(f"/fhir/Observation/{new_id}", headers=admin).status_code == 200
    events = env.events()[start:]
    assert [(e["subtype"][0]["code"], e["outcome"]) for e in events] == [
        ("create", "0"), ("delete", "0")]
    for event in events:
        refs = {e["what"]["reference"] for e in event["entity"]}
        assert refs == {f"Observation/{new_id}", "Patient/p1"}
    conflict = env.client.put("/fhir/Observation/o1", headers={**admin, "If-Match": 'W/"9"'},
                              json={**_obs(), "id": "o1"})
    assert conflict.status_code == 412
    assert env.events()[-1]["outcome"] == "4"  # a failed write is still audited, after it
    assert env.services.security.trail.verify()[1] is None
