"""Break-the-glass over HTTP, on SQLite and PostgreSQL: a physician unrelated to a patient gets
time-limited access (including ``R``, not ``V``) after stating a reason; the grant is audited
with purpose of use ETREAT and the BTG label, raises an alert (record, WARNING log, hook),
shows on ``medarchive audit break-glass`` and expires by the server's clock."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from http_env import Env, bearer, open_env
from typer.testing import CliRunner

from medarchive.security.access import Alert
from medarchive.security.labels import ACT_CODE, CONFIDENTIALITY

REASON = "unconscious patient in the emergency room, no relatives reachable"
PASSWORD = "correct horse battery staple"


def labelled(id: str, code: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Observation", "id": id, "status": "final",
                            "code": {"text": "note"}, "subject": {"reference": "Patient/pz"}}
    if code:
        body["meta"] = {"security": [{"system": CONFIDENTIALITY, "code": code}]}
    return body


@pytest.fixture(params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path: Any, spec: Any) -> Iterator[Env]:
    with open_env(request, request.param, tmp_path, spec, break_glass_minutes=30,
                  access_relationship_required=True) as built:
        resources = [{"resourceType": "Patient", "id": "pz"}, labelled("o-plain", None),
                     labelled("o-r", "R"), labelled("o-v", "V")]
        built.services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": r, "request": {"method": "PUT",
                                        "url": f"{r['resourceType']}/{r['id']}"}}
            for r in resources]})
        yield built


def glass(env: Env, headers: dict[str, str], **form: str) -> Any:
    return env.client.post("/auth/break-glass", data=form, headers=headers)


def ids(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry") or () if "resource" in e}


def test_break_glass_opens_the_record_until_it_expires(
        env: Env, caplog: pytest.LogCaptureFixture) -> None:
    alerts: list[Alert] = []
    env.services.security.access.hooks.append(alerts.append)
    doctor = bearer(env.token(role="physician", scope="user/*.cruds", subject="dora"))
    assert env.client.get("/fhir/Patient/pz", headers=doctor).status_code == 404
    with caplog.at_level(logging.WARNING, logger="medarchive.security.access"):
        granted = glass(env, doctor, patient="pz", reason=REASON)
    assert granted.status_code == 200, granted.text
    grant = granted.json()
    assert grant["patient"] == "pz" and grant["expires"] - grant["granted"] == 30 * 60
    assert any("BREAK-THE-GLASS" in r.getMessage() for r in caplog.records)
    assert [a.patient_id for a in alerts] == ["pz"]
    assert [a.kind for a in env.services.security.access.alerts()] == ["break-glass"]

    assert env.client.get("/fhir/Patient/pz", headers=doctor).status_code == 200
    found = env.client.get("/fhir/Observation?subject=Patient/pz", headers=doctor).json()
    assert ids(found) == {"o-plain", "o-r"} and found["total"] == 2  # R, but never V
    assert env.client.get("/fhir/Observation/o-v", headers=doctor).status_code == 404
    assert ids(env.client.get("/fhir/Patient/pz/$everything", headers=doctor).json()) == {
        "pz", "o-plain", "o-r"}

    events = env.events()
    granting = next(e for e in events if e["subtype"][0]["code"] == "break-glass")
    assert granting["meta"]["security"][0]["code"] == "BTG"
    assert granting["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
    assert REASON in granting["outcomeDesc"]
    read = next(e for e in events if e["subtype"][0]["code"] == "read" and e["outcome"] == "0")
    assert read["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT"
    assert read["meta"]["security"][0]["code"] == "BTG"

    env.clock.advance(30 * 60 + 1)
    assert env.client.get("/fhir/Patient/pz", headers=doctor).status_code == 404
    assert ids(env.client.get("/fhir/Observation", headers=doctor).json()) == set()
    assert env.services.security.access.grants(active_only=True) == []


@pytest.mark.parametrize("reason", ["", "emergency", " " * 40])
def test_a_stated_reason_is_required(env: Env, reason: str) -> None:
    doctor = bearer(env.token(role="physician", scope="user/*.cruds", subject="dora"))
    refused = glass(env, doctor, patient="pz", reason=reason)
    assert refused.status_code == 400
    assert refused.json()["resourceType"] == "OperationOutcome"
    assert env.services.security.access.grants() == []
    last = env.events()[-1]
    assert (last["subtype"][0]["code"], last["outcome"]) == ("break-glass", "4")
    assert env.client.get("/fhir/Patient/pz", headers=doctor).status_code == 404


def test_who_may_break_the_glass(env: Env) -> None:
    researcher = bearer(env.token(role="researcher", scope="user/*.rs", subject="rex"))
    assert glass(env, researcher, patient="pz", reason=REASON).status_code == 403
    nurse = bearer(env.token(role="nurse", scope="user/*.cruds", subject="nina"))
    assert glass(env, nurse, patient="nobody", reason=REASON).status_code == 404
    assert env.client.post("/auth/break-glass", data={"patient": "pz", "reason": REASON}
                           ).status_code == 401
    assert env.services.security.access.grants() == []


def test_auditors_see_grants_in_the_cli_and_the_admin_page(env: Env) -> None:
    doctor = bearer(env.token(role="physician", scope="user/*.cruds", subject="dora"))
    assert glass(env, doctor, patient="pz", reason=REASON).status_code == 200
    from medarchive.cli.main import app
    listed = CliRunner().invoke(app, ["audit", "break-glass"],
                                env={"MEDARCHIVE_DATABASE_URL": env.url})
    assert listed.exit_code == 0, listed.output
    assert '"patient":"pz"' in listed.output and REASON in listed.output

    ui_login(env, "audrey", "auditor")
    shown = env.client.get("/admin/break-glass")
    assert shown.status_code == 200
    assert "Patient/pz" in shown.text and REASON in shown.text


def ui_login(env: Env, username: str, role: str) -> str:
    """Log ``username`` in through the web UI; the CSRF token of its next form."""
    env.services.security.accounts.add_user(username, role, PASSWORD)
    found = re.search(r'name="csrf_token" value="([^"]+)"', env.client.get("/login").text)
    assert found is not None
    env.client.post("/login", data={"username": username, "password": PASSWORD,
                                    "csrf_token": found.group(1)})
    return found.group(1)


def test_the_chart_offers_break_the_glass(env: Env) -> None:
    csrf = ui_login(env, "dana", "physician")
    denied = env.client.get("/patients/pz")
    assert denied.status_code == 404 and 'id="break-glass"' in denied.text
    short = env.client.post("/patients/pz/break-glass",
                            data={"reason": "urgent", "csrf_token": csrf})
    assert short.status_code == 400
    opened = env.client.post("/patients/pz/break-glass",
                             data={"reason": REASON, "csrf_token": csrf}, follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"].endswith("/patients/pz")
    assert env.client.get("/patients/pz").status_code == 200
    assert [g.principal for g in env.services.security.access.grants()] == ["dana"]


def test_writes_under_a_grant_are_audited_as_emergency(env: Env) -> None:
    """A create, update and delete that only a break-glass grant allowed are audited with
    purpose of use ETREAT and the BTG label, not the user's own purpose (TREAT)."""
    doctor = bearer(env.token(role="physician", scope="user/*.cruds", subject="dora"))
    assert glass(env, doctor, patient="pz", reason=REASON).status_code == 200
    new = {k: v for k, v in labelled("o-new", None).items() if k != "id"}
    created = env.client.post("/fhir/Observation", headers=doctor, json=new)
    updated = env.client.put("/fhir/Observation/o-plain", headers=doctor,
                             json=labelled("o-plain", None) | {"status": "amended"})
    deleted = env.client.delete("/fhir/Observation/o-r", headers=doctor)
    assert [created.status_code, updated.status_code, deleted.status_code] == [201, 200, 200]
    writes = [e for e in env.events() if e["subtype"][0]["code"] in ("create", "update",
                                                                    "delete")
              and e["agent"][0]["who"]["identifier"]["value"] == "dora"]
    assert [e["subtype"][0]["code"] for e in writes] == ["create", "update", "delete"]
    for event in writes:
        assert event["purposeOfEvent"][0]["coding"][0]["code"] == "ETREAT", event
        assert event["meta"]["security"] == [{"system": ACT_CODE, "code": "BTG",
                                              "display": "break the glass"}]
