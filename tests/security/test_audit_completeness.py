"""Audit completeness and tamper evidence, through the real app and the real CLI, on SQLite and
PostgreSQL.

Completeness: a scripted run of mixed interactions (successes, 4xx failures, a batch of k
entries, a transaction, $everything, logins, the auditors' own search) must leave exactly one
AuditEvent per interaction (k+1 for the batch) with the right subtype, action, outcome and
entity, in order. Tamper evidence: editing, deleting, inserting or reordering one row of
``audit_event`` directly in SQL makes ``medarchive audit verify`` exit 1 naming that row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from http_env import FHIR_JSON, Env, bearer, open_env
from typer.testing import CliRunner

from medarchive.cli.main import app
from medarchive.security.audit import chain_hash

PASSWORD = "a long enough passphrase"
JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class Expect:
    """One AuditEvent: RESTful subtype (or 110122 for logins), action, outcome and the
    entity: a reference (``Type/`` prefix matches any id of that type), ``?text`` for a query
    description containing text, or None for no entity."""

    subtype: str
    action: str
    outcome: str
    entity: str | None = None


def _entity_ok(event: dict[str, Any], wanted: str | None) -> bool:
    entities = event.get("entity") or []
    if wanted is None:
        return not entities
    if wanted.startswith("?"):
        return any(wanted[1:] in e.get("description", "") for e in entities)
    refs = [e.get("what", {}).get("reference", "") for e in entities]
    return any(r == wanted or (wanted.endswith("/") and r.startswith(wanted)) for r in refs)


def _obs(patient: str, **more: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "hr"},
            "subject": {"reference": f"Patient/{patient}"}, **more}


def _seed(env: Env) -> None:
    env.services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": p}, "request": {
            "method": "PUT", "url": f"Patient/{p}"}} for p in ("p1", "p2")] + [
        {"resource": {**_obs("p1"), "id": "o1", "identifier": [{"system": "urn:x",
                                                                  "value": "o1"}]},
         "request": {"method": "PUT", "url": "Observation/o1"}}]})
    env.services.security.accounts.add_user("doc", "physician", PASSWORD)


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path: Path, spec: Any) -> Iterator[Env]:
    with open_env(request, request.param, tmp_path, spec) as built:
        _seed(built)
        yield built


Step = tuple[str, Callable[[Env, dict[str, dict[str, str]]], Any], list[Expect]]


def _steps() -> list[Step]:
    def get(path: str, who: str = "admin", **headers: str) -> Callable[..., Any]:
        return lambda env, h: env.client.get(f"/fhir/{path}", headers={**h[who], **headers})

    def send(method: str, path: str, body: Any, who: str = "admin",
             **headers: str) -> Callable[..., Any]:
        return lambda env, h: env.client.request(method, f"/fhir/{path}".rstrip("/"), json=body,
                                                 headers={**h[who], **headers})

    def login(password: str) -> Callable[..., Any]:
        return lambda env, h: env.client.post("/auth/login", data={"username": "doc",
                                                                   "password": password})
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "Patient/p1"}},
        {"request": {"method": "GET", "url": "Patient/nobody"}},
        {"resource": _obs("p1"), "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "DELETE", "url": "Observation/o1"}}]}
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _obs("p2"), "request": {"method": "POST", "url": "Observation"}},
        {"resource": _obs("p2"), "request": {"method": "POST", "url": "Observation"}}]}
    patch = [{"op": "replace", "path": "/status", "value": "amended"}]
    return [
        ("read", get("Patient/p1"), [Expect("read", "R", "0", "Patient/p1")]),
        ("vread", get("Patient/p1/_history/1"), [Expect("vread", "R", "0", "Patient/p1")]),
        ("search", get("Observation?subject=Patient/p1"),
         [Expect("search", "E", "0", "?subject=Patient/p1")]),
        ("history", get("Patient/p1/_history"), [Expect("history", "R", "0", "Patient/p1")]),
        ("create", send("POST", "Observation", _obs("p1")),
         [Expect("create", "C", "0", "Observation/")]),
        ("update", send("PUT", "Observation/o2", {**_obs("p1"), "id": "o2"}),
         [Expect("update", "U", "0", "Observation/o2")]),
        ("patch", send("PATCH", "Observation/o2", patch, **{"content-type": JSON_PATCH}),
         [Expect("patch", "U", "0", "Observation/o2")]),
        ("conditional create", send("POST", "Observation", _obs("p1"),
                                    **{"If-None-Exist": "identifier=urn:x|o1"}),
         [Expect("create", "C", "0", "Observation/o1")]),
        ("delete", send("DELETE", "Observation/o2", None),
         [Expect("delete", "D", "0", "Observation/o2")]),
        ("read missing", get("Patient/nobody"), [Expect("read", "R", "4", "Patient/nobody")]),
        ("read deleted", get("Observation/o2"), [Expect("read", "R", "4", "Observation/o2")]),
        ("forbidden", send("DELETE", "Observation/o1", None, who="nurse"),
         [Expect("delete", "D", "4", "Observation/o1")]),
        ("bad request", get("Observation?_count=x", **{"Prefer": "handling=strict"}),
         [Expect("search", "E", "4", "?_count=x")]),
        ("precondition", send("PUT", "Observation/o1", {**_obs("p1"), "id": "o1"},
                              **{"If-Match": 'W/"9"'}),
         [Expect("update", "U", "4", "Observation/o1")]),
        ("patient refused", get("Observation/_history", who="patient"),
         [Expect("history", "R", "4", "?")]),
        ("everything", get("Patient/p1/$everything", who="patient"),
         [Expect("operation", "E", "0", "Patient/p1")]),
        # the entries in R4 processing order (DELETE, POST, PUT/PATCH, GET), then the batch
        ("batch of 4", send("POST", "", batch, who="nurse"), [
            Expect("delete", "D", "4", "Observation/o1"),
            Expect("create", "C", "0", "Observation/"),
            Expect("read", "R", "0", "Patient/p1"),
            Expect("read", "R", "4", "Patient/nobody"),
            Expect("batch", "E", "0")]),
        ("transaction", send("POST", "", transaction),
         [Expect("transaction", "E", "0", "Patient/p2")]),
        ("refused transaction", send("POST", "", transaction, who="auditor"),
         [Expect("transaction", "E", "4")]),
        ("failed login", login("wrong password"), [Expect("110122", "E", "4")]),
        ("login", login(PASSWORD), [Expect("110122", "E", "0")]),
        ("audit search", get("AuditEvent?_count=2", who="auditor"),
         [Expect("search", "E", "0", "?AuditEvent?_count=2")]),
        ("audit search refused", get("AuditEvent", who="admin"),
         [Expect("search", "E", "4", "?AuditEvent?")]),
    ]


def test_every_interaction_leaves_exactly_its_audit_events(env: Env) -> None:
    headers = {
        "admin": bearer(env.token(role="administrator", scope="user/*.cruds"),
                        **{"content-type": FHIR_JSON}),
        "nurse": bearer(env.token(role="nurse", scope="user/*.cruds"),
                        **{"content-type": FHIR_JSON}),
        "auditor": bearer(env.token(role="auditor", scope="user/*.cruds"),
                          **{"content-type": FHIR_JSON}),
        "patient": bearer(env.token(role="patient", scope="patient/*.rs", patient="p1"),
                          **{"content-type": FHIR_JSON})}
    start = len(env.events())
    for label, call, expected in _steps():
        before = len(env.events())
        response = call(env, headers)
        assert response.status_code < 500, (label, response.text)
        events = env.events()[before:]
        got = [(e["subtype"][0]["code"], e["action"], e["outcome"]) for e in events]
        assert got == [(x.subtype, x.action, x.outcome) for x in expected], (label, got)
        for event, want in zip(events, expected, strict=True):
            assert _entity_ok(event, want.entity), (label, event.get("entity"))
    n = len(_steps())
    assert len(env.events()) - start == n + 4  # one per interaction, plus 4 batch entries
    assert env.services.security.trail.verify()[1] is None


# -- tamper evidence through `medarchive audit verify` ------------------------------------------

def _verify(env: Env) -> Any:
    return CliRunner().invoke(app, ["--database-url", env.url, "audit", "verify"])


def _execute(env: Env, sql: str, params: Any = ()) -> None:
    db = env.services.security.db
    with db.writing() as cur:
        cur.execute(db.sql(sql), params)


def _row(env: Env, seq: int) -> tuple[int, str, str, str]:
    db = env.services.security.db
    with db.reading() as cur:
        cur.execute(db.sql("SELECT recorded, body, prev_hash, hash FROM audit_event "
                           "WHERE seq = ?"), (seq,))
        row = cur.fetchone()
    return int(row[0]), row[1], row[2], row[3]


def _shift_up(env: Env, start: int, last: int) -> None:
    """Move rows start..last one seq up (from the top, so the primary key never clashes)."""
    for seq in range(last, start - 1, -1):
        _execute(env, "UPDATE audit_event SET seq = ? WHERE seq = ?", (seq + 1, seq))


def _tamper(env: Env, how: str, k: int, last: int) -> None:
    recorded, body, prev, digest = _row(env, k)
    if how == "edit":
        _execute(env, "UPDATE audit_event SET body = ? WHERE seq = ?",
                 (body.replace('"outcome":"0"', '"outcome":"4"'), k))
    elif how == "edit-rehashed":  # the row re-hashed too: the next row no longer links
        forged = body.replace('"outcome":"0"', '"outcome":"4"')
        _execute(env, "UPDATE audit_event SET body = ?, hash = ? WHERE seq = ?",
                 (forged, chain_hash(prev, k, forged), k))
    elif how == "delete":
        _execute(env, "DELETE FROM audit_event WHERE seq = ?", (k,))
    elif how in ("insert", "insert-rehashed"):
        _shift_up(env, k, last)
        forged = body.replace('"outcome":"0"', '"outcome":"4"')
        new_hash = chain_hash(prev, k, forged) if how == "insert-rehashed" else digest
        _execute(env, "INSERT INTO audit_event (seq, recorded, body, prev_hash, hash) "
                      "VALUES (?, ?, ?, ?, ?)", (k, recorded, forged, prev, new_hash))
    elif how == "reorder":
        _execute(env, "UPDATE audit_event SET seq = ? WHERE seq = ?", (last + 100, k))
        _execute(env, "UPDATE audit_event SET seq = ? WHERE seq = ?", (k, k + 1))
        _execute(env, "UPDATE audit_event SET seq = ? WHERE seq = ?", (k + 1, last + 100))
    elif how == "append":  # a well-formed row after the head
        _, _, _, top = _row(env, last)
        _execute(env, "INSERT INTO audit_event (seq, recorded, body, prev_hash, hash) "
                      "VALUES (?, ?, ?, ?, ?)",
                 (last + 1, recorded, body, top, chain_hash(top, last + 1, body)))
    else:
        raise AssertionError(how)


# (how, which row ``audit verify`` must name: the tampered one, or the one after it when the
# forger re-hashed theirs, since a hash chain breaks where the next row no longer links)
TAMPERING = [("edit", 0), ("edit-rehashed", 1), ("delete", 0), ("insert", 0),
             ("insert-rehashed", 1), ("reorder", 0), ("append", 0)]


@pytest.mark.parametrize(("how", "after"), TAMPERING)
def test_audit_verify_names_the_tampered_row(env: Env, how: str, after: int) -> None:
    token = bearer(env.token(role="administrator", scope="user/*.cruds"))
    for path in ("Patient/p1", "Patient/p2", "Observation/o1", "Patient/p1/_history",
                 "Observation?subject=Patient/p1", "Patient/p2/_history/1"):
        assert env.client.get(f"/fhir/{path}", headers=token).status_code == 200
    clean = _verify(env)
    last = len(env.events())
    assert clean.exit_code == 0 and f"{last} records" in clean.output, clean.output
    k = 3 if how != "append" else last + 1
    _tamper(env, how, min(k, last), last)
    broken = _verify(env)
    assert broken.exit_code == 1, broken.output
    assert f"at record {k + after}:" in broken.output, broken.output
