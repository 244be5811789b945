"""AuditEvent search (R4 AuditEvent search parameters) as SQL over the audit index, on every
backend: each parameter against a Python model of the same events, paging and sorting,
``_summary=count``, errors, auditors only; the 0011 back-fill gives the same index as the
Python extraction; and, through HTTP, search AuditEvents name the patients they returned."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest
from http_env import Env, bearer, open_env
from hypothesis import given
from hypothesis import strategies as st

from medarchive.errors import BadRequest, Forbidden
from medarchive.fhir.search.dates import date_range
from medarchive.fhir.search.values import split_values
from medarchive.security.actor import Actor
from medarchive.security.audit import chain_hash
from medarchive.security.audit_events import audit_event
from medarchive.security.audit_index import (
    index_rows,
    parse_audit_search,
    recorded_us,
)
from medarchive.security.scopes import parse_scopes
from medarchive.security.service import Security
from medarchive.store.sql.database import open_database
from medarchive.store.sql.migrations import available
from medarchive.web.auth_routes import audit_search

ISSUER = "http://testserver/fhir"
AUDITOR = Actor("user", "audra", "auditor", parse_scopes("user/AuditEvent.rs")[0])
PEOPLE = [Actor("user", "alice", "physician", (), address="10.0.0.7"),
          Actor("user", "bob", "nurse", (), address="10.0.1.9"),
          Actor("client", "lab", "integration", (), client_id="lab", address="192.168.4.2")]
INTERACTIONS = ["read", "search", "create", "update", "delete", "vread", "login"]


def _fill(security: Security, clock: Any) -> list[tuple[int, dict[str, Any]]]:
    """21 events: three actors, seven interactions, some failing, patients p0..p3, one
    minute apart."""
    for i in range(21):
        who = PEOPLE[i % 3]
        name = INTERACTIONS[i % 7]
        patient = f"p{i % 4}"
        entities = [f"Observation/o{i}"] if name != "search" else []
        security.trail.record(audit_event(
            who, name, security.trail.now(), status=(404 if i % 5 == 0 else 200),
            entities=entities, patients=[patient] if name != "login" else [],
            query="code=x" if name == "search" else None))
        clock.advance(60)
    return security.trail.events()


def _search(security: Security, *params: tuple[str, str],
            actor: Actor = AUDITOR) -> dict[str, Any]:
    return audit_search(security, actor, list(params), ISSUER)


def _seqs(bundle: dict[str, Any]) -> list[int]:
    return [int(entry["resource"]["id"]) for entry in bundle["entry"]]


def _model(events: list[tuple[int, dict[str, Any]]],
           keep: Callable[[dict[str, Any]], bool]) -> list[int]:
    return [seq for seq, event in events if keep(event)]


def _refs(event: dict[str, Any]) -> set[str]:
    return {e["what"]["reference"] for e in event.get("entity", ()) if "what" in e}


def _agent_ids(event: dict[str, Any]) -> set[str]:
    return {a["who"]["identifier"]["value"] for a in event["agent"]}


def _at(event: dict[str, Any]) -> int:
    return date_range(event["recorded"])[0]


def test_each_parameter_matches_the_model(security: Security, clock: Any) -> None:
    events = _fill(security, clock)
    tenth = events[9][1]["recorded"]
    minute = tenth[:16]  # YYYY-MM-DDThh:mm: the whole minute of event 10
    cases: list[tuple[list[tuple[str, str]], Callable[[dict[str, Any]], bool]]] = [
        ([("agent", "alice")], lambda e: "alice" in _agent_ids(e)),
        ([("agent", "lab,bob")], lambda e: bool({"lab", "bob"} & _agent_ids(e))),
        ([("agent-role", "nurse")], lambda e: e["agent"][0]["role"][0]["text"] == "nurse"),
        ([("address", "10.0.")], lambda e: e["agent"][0].get("network", {}).get(
            "address", "").startswith("10.0.")),
        ([("entity", "Observation/o4")], lambda e: "Observation/o4" in _refs(e)),
        ([("patient", "p2")], lambda e: "Patient/p2" in _refs(e)),
        ([("patient", "Patient/p1"), ("action", "R")],
         lambda e: "Patient/p1" in _refs(e) and e["action"] == "R"),
        ([("action", "C,U")], lambda e: e["action"] in ("C", "U")),
        ([("subtype", "http://hl7.org/fhir/restful-interaction|delete")],
         lambda e: e["subtype"][0]["code"] == "delete"),
        ([("subtype", "read")], lambda e: e["subtype"][0]["code"] == "read"),
        ([("outcome", "4")], lambda e: e["outcome"] == "4"),
        ([("type", "rest")], lambda e: e["type"]["code"] == "rest"),
        ([("type", "http://terminology.hl7.org/CodeSystem/audit-event-type|")],
         lambda e: True),
        ([("purpose", "TREAT")], lambda e: any(
            c.get("code") == "TREAT" for p in e.get("purposeOfEvent", ())
            for c in p.get("coding", ()))),
        ([("date", f"ge{tenth}")], lambda e: _at(e) >= _at(events[9][1])),
        ([("date", f"lt{tenth}")], lambda e: _at(e) < _at(events[9][1])),
        ([("date", minute)], lambda e: e["recorded"].startswith(minute)),
        ([("date", f"gt{minute}"), ("date", f"le{events[14][1]['recorded']}")],
         lambda e: _at(events[9][1]) < _at(e) <= _at(events[14][1])),
        ([("date", f"ne{minute}")], lambda e: not e["recorded"].startswith(minute)),
        ([("date", "eb2000"), ("agent", "alice")], lambda e: False),
    ]
    last = events[-1][0]  # the searches below are audited too: leave them out
    for params, keep in cases:
        found = _search(security, *params, ("_count", "100"))
        assert [s for s in _seqs(found) if s <= last] == _model(events, keep), params


def test_patient_is_answered_from_entity_rows(security: Security, clock: Any) -> None:
    """New events get no ``patient`` index rows; ``patient`` finds them through their entity
    references of type Patient, in every accepted form, and nothing else."""
    events = _fill(security, clock)
    with security.db.reading() as cur:
        cur.execute("SELECT COUNT(*) FROM audit_ref WHERE name = 'patient'")
        assert cur.fetchone()[0] == 0
    last = events[-1][0]
    with_p1 = _model(events, lambda e: "Patient/p1" in _refs(e))
    assert with_p1
    for value in ("p1", "Patient/p1", "http://elsewhere/fhir/Patient/p1", "Observation/o2,p1"):
        found = _search(security, ("patient", value), ("_count", "100"))
        assert [s for s in _seqs(found) if s <= last] == with_p1, value
    for value in ("Observation/o2", "http://elsewhere/fhir/Observation/o2"):
        assert _search(security, ("patient", value))["entry"] == [], value
    assert _search(security, ("entity", "Observation/o2"))["entry"] != []


def test_paging_sorting_and_count(security: Security, clock: Any) -> None:
    events = _fill(security, clock)
    first = _search(security, ("_count", "5"), ("agent", "alice"))
    expected = _model(events, lambda e: "alice" in _agent_ids(e))
    assert _seqs(first) == expected[:5]
    nxt = next(link["url"] for link in first["link"] if link["relation"] == "next")
    second = _search(security, *parse_qsl(urlsplit(nxt).query))
    assert _seqs(second) == expected[5:10]
    until = ("date", f"le{events[-1][1]['recorded']}")  # not the audited searches after it
    newest = _search(security, ("_sort", "-date"), ("_count", "3"), until)
    assert _seqs(newest) == [seq for seq, _ in events][::-1][:3]
    paged = next(link["url"] for link in newest["link"] if link["relation"] == "next")
    assert _seqs(_search(security, *parse_qsl(urlsplit(paged).query))) == \
        [seq for seq, _ in events][::-1][3:6]
    counted = _search(security, ("_summary", "count"), ("outcome", "4"))
    assert counted["total"] == len(_model(events, lambda e: e["outcome"] == "4"))
    assert counted["entry"] == []


def test_errors_and_access(security: Security, clock: Any) -> None:
    _fill(security, clock)
    for bad in [("name", "x"), ("date", "yesterday"), ("_sort", "agent"), ("_count", "x"),
                ("agent:exact", "alice"), ("action", "|"), ("_summary", "true")]:
        with pytest.raises(BadRequest):
            _search(security, bad)
    admin = Actor("user", "root", "administrator", parse_scopes("user/*.cruds")[0])
    with pytest.raises(Forbidden):
        _search(security, actor=admin)
    before = len(security.trail.events(limit=10_000))
    _search(security, ("agent", "alice"))
    searches = security.trail.events(after=before)
    assert len(searches) == 1 and "agent=alice" in searches[0][1]["entity"][0]["description"]


@given(st.lists(st.tuples(st.sampled_from(["date", "agent", "patient", "action", "_count",
                                             "_sort", "address", "purpose", "x", "_summary"]),
                          st.text(max_size=12)), max_size=4))
def test_parser_accepts_or_refuses_cleanly(params: list[tuple[str, str]]) -> None:
    try:
        parsed = parse_audit_search(params)
    except BadRequest:
        return
    assert 0 <= parsed.count <= 1000 and parsed.sort in ("seq", "date", "-date")


@given(st.lists(st.text(alphabet="ab,\\|x", max_size=5), min_size=1, max_size=4))
def test_comma_split_keeps_escaped_commas(parts: list[str]) -> None:
    escaped = [p.replace("\\", "\\\\").replace(",", "\\,") for p in parts]
    assert split_values(",".join(escaped)) == escaped


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_backfill_matches_the_python_index(database_url: str) -> None:
    """Rows written before migration 0011 get the same index as rows written after it."""
    db = open_database(database_url)
    try:
        with db.writing() as cur:
            cur.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                        "name TEXT NOT NULL, applied_at TEXT NOT NULL)")
        from medarchive.store.sql.migrations import _statements, migrate
        for migration in available(db.dialect):
            if migration.version >= 11:
                continue
            with db.writing() as cur:
                cur.execute(db.sql("INSERT INTO schema_migrations VALUES (?, ?, 'now')"),
                            (migration.version, migration.name))
                for statement in _statements(migration.sql):
                    cur.execute(statement)
        events = []
        for i, who in enumerate(PEOPLE * 2):
            event = audit_event(who, INTERACTIONS[i % 7], _when(i), status=200 + i * 50,
                                entities=[f"Observation/o{i}", "Patient/p9"],
                                patients=[f"p{i}"])
            event["agent"][0]["name"] = f"Dr {who.id.title()}"
            event["agent"][0]["altId"] = f"alt-{who.id}"
            event["agent"][0]["role"].append({"coding": [{"system": "urn:r", "code": "R1"}]})
            event["agent"][0]["purposeOfUse"] = [{"coding": [{"system": "urn:p",
                                                               "code": "ETREAT"}]}]
            events.append(event)
        prev = "genesis"
        with db.writing() as cur:
            for seq, event in enumerate(events, 1):
                body = orjson.dumps(event, option=orjson.OPT_SORT_KEYS).decode()
                digest = chain_hash(prev, seq, body)
                cur.execute(db.sql("INSERT INTO audit_event (seq, recorded, body, prev_hash, "
                                   "hash) VALUES (?, 0, ?, ?, ?)"), (seq, body, prev, digest))
                prev = digest
            cur.execute(db.sql("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1"),
                        (len(events), prev))
        assert next(m.version for m in migrate(db)) == 11
        with db.reading() as cur:
            cur.execute("SELECT seq, name, value, system FROM audit_ref")
            stored = {(int(seq), name, value, system)
                      for seq, name, value, system in cur.fetchall()}
            cur.execute("SELECT seq, recorded_us FROM audit_event ORDER BY seq")
            moments = [int(at) for _, at in cur.fetchall()]
        expected = {(seq, name, value, system) for seq, event in enumerate(events, 1)
                    for name, value, system in index_rows(event)}
        back_filled = {row for row in stored if row[1] == "patient"}
        assert stored - back_filled == expected
        # the back-filled patient rows, which searches no longer read, are exactly the
        # entity rows of type Patient that ``patient`` searches read instead
        assert back_filled == {(seq, "patient", value, system) for seq, name, value, system
                               in expected if name == "entity" and value.startswith("Patient/")}
        assert moments == [recorded_us(event, 0) for event in events]
    finally:
        db.close()


def _when(i: int) -> Any:
    from datetime import UTC, datetime, timedelta
    return datetime(2026, 3, 1, 8, 0, tzinfo=UTC) + timedelta(seconds=i, microseconds=i * 7)


# -- patients touched, through HTTP --------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path: Path, spec: Any) -> Iterator[Env]:
    with open_env(request, request.param, tmp_path, spec) as built:
        entries: list[dict[str, Any]] = [
            {"resource": {"resourceType": "Patient", "id": p, "name": [{"family": "Doe"}]},
             "request": {"method": "PUT", "url": f"Patient/{p}"}} for p in ("p1", "p2", "p3")]
        entries += [{"resource": {"resourceType": "Observation", "id": f"o{p}",
                                  "status": "final", "code": {"text": "hr"},
                                  "subject": {"reference": f"Patient/{p}"}},
                     "request": {"method": "PUT", "url": f"Observation/o{p}"}}
                    for p in ("p1", "p2")]
        built.services.submit({"resourceType": "Bundle", "type": "transaction",
                               "entry": entries})
        yield built


def _last_event(env: Env) -> dict[str, Any]:
    return env.events()[-1]


def _descriptions(event: dict[str, Any]) -> list[str]:
    return [e["description"] for e in event.get("entity", ()) if "description" in e]


def _patients(event: dict[str, Any]) -> set[str]:
    return {e["what"]["reference"] for e in event.get("entity", ())
            if e.get("role", {}).get("code") == "1"}


def test_search_and_read_events_name_the_patients(env: Env) -> None:
    clerk = bearer(env.token(role="records_clerk", scope="user/*.cruds"))
    found = env.client.get("/fhir/Observation?status=final", headers=clerk)
    assert found.status_code == 200 and len(found.json()["entry"]) == 2
    assert _patients(_last_event(env)) == {"Patient/p1", "Patient/p2"}
    assert env.client.get("/fhir/Observation/op2", headers=clerk).status_code == 200
    assert _patients(_last_event(env)) == {"Patient/p2"}
    assert env.client.get("/fhir/Patient?family=Doe", headers=clerk).status_code == 200
    assert _patients(_last_event(env)) == {"Patient/p1", "Patient/p2", "Patient/p3"}
    admin = bearer(env.token(role="administrator", scope="user/*.cruds"))
    created = env.client.post("/fhir/Observation", headers=admin, json={
        "resourceType": "Observation", "status": "final", "code": {"text": "bp"},
        "subject": {"reference": "Patient/p3"}})
    assert created.status_code == 201
    event = _last_event(env)
    assert _patients(event) == {"Patient/p3"} and event["action"] == "C"
    auditor = bearer(env.token(role="auditor", scope="user/AuditEvent.rs"))
    touched = env.client.get("/fhir/AuditEvent?patient=p1&subtype=search", headers=auditor)
    assert touched.status_code == 200
    assert [d for e in touched.json()["entry"] for d in _descriptions(e["resource"])] == [
        "status=final", "family=Doe"]
    refused = env.client.get("/fhir/AuditEvent?patient=p1", headers=clerk)
    assert refused.status_code == 403


def _newest_event(env: Env) -> tuple[dict[str, str], dict[str, str], dict[str, Any]]:
    """Auditor and clerk headers, and the search entry of the clerk's read of p1."""
    auditor = bearer(env.token(role="auditor", scope="user/AuditEvent.rs"))
    clerk = bearer(env.token(role="records_clerk", scope="user/*.cruds"))
    assert env.client.get("/fhir/Patient/p1", headers=clerk).status_code == 200
    listed = env.client.get("/fhir/AuditEvent?_sort=-date&_count=1",
                            headers=auditor).json()["entry"][0]
    return auditor, clerk, listed


def test_auditors_read_one_event_by_id(env: Env) -> None:
    """``GET /fhir/AuditEvent/{id}`` answers the event the search lists under that id, for
    auditors only, and is itself audited; unknown or malformed ids are 404."""
    auditor, clerk, listed = _newest_event(env)
    seq = listed["resource"]["id"]
    read = env.client.get(f"/fhir/AuditEvent/{seq}", headers=auditor)
    assert read.status_code == 200, read.text
    assert read.json() == listed["resource"]
    assert listed["fullUrl"].endswith(f"/AuditEvent/{seq}")
    event = _last_event(env)
    assert event["subtype"][0]["code"] == "read" and event["outcome"] == "0"
    assert event["entity"][0]["what"]["reference"] == f"AuditEvent/{seq}"
    for bad in ("999999", "abc", "1e3", "99999999999999999999999"):
        missing = env.client.get(f"/fhir/AuditEvent/{bad}", headers=auditor)
        assert missing.status_code == 404, bad
        assert missing.json()["resourceType"] == "OperationOutcome"
    assert env.client.get(f"/fhir/AuditEvent/{seq}", headers=clerk).status_code == 403
    assert env.client.get(f"/fhir/AuditEvent/{seq}").status_code == 401


def test_auditors_vread_the_only_version_of_an_event(env: Env) -> None:
    """An audit event never changes: ``_history/1`` is the event, any other version is 404;
    the vread is itself audited as a vread."""
    auditor, _, listed = _newest_event(env)
    seq = listed["resource"]["id"]
    read = env.client.get(f"/fhir/AuditEvent/{seq}/_history/1", headers=auditor)
    assert read.status_code == 200, read.text
    assert read.json() == listed["resource"]
    event = _last_event(env)
    assert event["subtype"][0]["code"] == "vread"
    assert event["entity"][0]["what"]["reference"] == f"AuditEvent/{seq}/_history/1"
    other = env.client.get(f"/fhir/AuditEvent/{seq}/_history/2", headers=auditor)
    assert other.status_code == 404 and other.json()["resourceType"] == "OperationOutcome"
    assert _last_event(env)["outcome"] != "0"


def test_auditors_read_an_events_history(env: Env) -> None:
    """``GET /fhir/AuditEvent/{id}/_history`` is a history Bundle holding the event's one
    version, for auditors only, audited as a history interaction; unknown ids are 404."""
    auditor, clerk, listed = _newest_event(env)
    seq = listed["resource"]["id"]
    history = env.client.get(f"/fhir/AuditEvent/{seq}/_history", headers=auditor)
    assert history.status_code == 200, history.text
    bundle = history.json()
    assert (bundle["type"], bundle["total"], len(bundle["entry"])) == ("history", 1, 1)
    assert bundle["entry"][0]["resource"] == listed["resource"]
    assert bundle["entry"][0]["fullUrl"] == listed["fullUrl"]
    event = _last_event(env)
    assert event["subtype"][0]["code"] == "history" and event["outcome"] == "0"
    assert event["entity"][0]["what"]["reference"] == f"AuditEvent/{seq}/_history"
    for bad in ("999999", "abc"):
        missing = env.client.get(f"/fhir/AuditEvent/{bad}/_history", headers=auditor)
        assert missing.status_code == 404, bad
    assert env.client.get(f"/fhir/AuditEvent/{seq}/_history", headers=clerk).status_code == 403
    assert env.client.get(f"/fhir/AuditEvent/{seq}/_history").status_code == 401


def test_a_batch_entry_reads_an_event(env: Env) -> None:
    """A batch entry ``GET AuditEvent/{id}`` (also ``/_history`` and ``/_history/1``) answers
    from the trail for auditors, each entry audited like any other; others get 403 entries."""
    auditor, clerk, listed = _newest_event(env)
    seq = listed["resource"]["id"]
    urls = [f"AuditEvent/{seq}", f"AuditEvent/{seq}/_history/1", f"AuditEvent/{seq}/_history",
            f"AuditEvent/{seq}/_history/2", "AuditEvent/999999"]
    batch = {"resourceType": "Bundle", "type": "batch",
             "entry": [{"request": {"method": "GET", "url": url}} for url in urls]}
    answered = env.client.post("/fhir", headers=auditor, json=batch)
    assert answered.status_code == 200, answered.text
    entries = answered.json()["entry"]
    assert [e["response"]["status"][:3] for e in entries] == ["200", "200", "200", "404", "404"]
    assert entries[0]["resource"] == entries[1]["resource"] == listed["resource"]
    assert entries[2]["resource"]["entry"][0]["resource"] == listed["resource"]
    events = env.events()[-6:]
    assert [e["subtype"][0]["code"] for e in events] == [
        "read", "vread", "history", "vread", "read", "batch"]
    assert [e["outcome"] for e in events] == ["0", "0", "0", "4", "4", "0"]
    refused = env.client.post("/fhir", headers=clerk, json=batch).json()["entry"]
    assert {e["response"]["status"][:3] for e in refused} == {"403"}
