"""Purpose of use (v3-PurposeOfUse) over HTTP, on SQLite and PostgreSQL: the token carries it
(asked for at login, else the role's default), researchers act only for HRESCH, and every
AuditEvent records it in ``purposeOfEvent``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from http_env import Env, bearer, open_env

from medarchive.security.authz import PURPOSE_SYSTEM

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        spec: Any) -> Iterator[Env]:
    folder = tmp_path_factory.mktemp(f"purpose-{request.param}")
    with open_env(request, request.param, folder, spec,
                  access_relationship_required=True) as built:
        built.services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1"},
             "request": {"method": "PUT", "url": "Patient/p1"}}]})
        accounts = built.services.security.accounts
        accounts.add_user("rex", "researcher", PASSWORD)
        accounts.add_user("doc", "physician", PASSWORD)
        yield built


def purposes(event: dict[str, Any]) -> list[tuple[str, str]]:
    return [(c["system"], c["code"]) for concept in event.get("purposeOfEvent", ())
            for c in concept["coding"]]


def login(env: Env, username: str, purpose: str | None = None) -> Any:
    form = {"username": username, "password": PASSWORD}
    if purpose is not None:
        form["purpose_of_use"] = purpose
    return env.client.post("/auth/login", data=form)


def test_researchers_act_for_research_only(env: Env) -> None:
    default = bearer(env.token(role="researcher", scope="user/*.rs", subject="rex"))
    assert env.client.get("/fhir/Patient", headers=default).status_code == 200
    assert purposes(env.events()[-1]) == [(PURPOSE_SYSTEM, "HRESCH")]
    issued = env.services.security.tokens.issue("rex", kind="user", role="researcher",
                                                scope="user/*.rs", purpose="TREAT")
    treating = bearer(issued["access_token"])
    refused = env.client.get("/fhir/Patient", headers=treating)
    assert refused.status_code == 403
    assert "purpose of use TREAT" in refused.text
    last = env.events()[-1]
    assert (last["outcome"], purposes(last)) == ("4", [(PURPOSE_SYSTEM, "TREAT")])


def test_login_asks_for_a_purpose(env: Env) -> None:
    assert login(env, "rex", "TREAT").status_code == 400
    assert login(env, "doc", "MADEUP").status_code == 400
    assert purposes(env.events()[-1]) == [(PURPOSE_SYSTEM, "MADEUP")]
    research = login(env, "rex", "HRESCH")
    assert research.status_code == 200
    payment = login(env, "doc", "HPAYMT")
    assert payment.status_code == 200
    assert purposes(env.events()[-1]) == [(PURPOSE_SYSTEM, "HPAYMT")]  # the login event
    headers = bearer(payment.json()["access_token"])
    assert env.client.get("/fhir/Patient", headers=headers).status_code == 200
    assert purposes(env.events()[-1]) == [(PURPOSE_SYSTEM, "HPAYMT")]
    plain = login(env, "doc")
    env.client.get("/fhir/Patient", headers=bearer(plain.json()["access_token"]))
    assert purposes(env.events()[-1]) == [(PURPOSE_SYSTEM, "TREAT")]


def test_every_audit_event_records_a_purpose(env: Env) -> None:
    admin = bearer(env.token(role="administrator", scope="user/*.cruds", subject="ada"))
    env.client.get("/fhir/Patient/p1", headers=admin)
    env.client.get("/fhir/Patient/unknown", headers=admin)
    assert all(purposes(event) for event in env.events())
    assert purposes(env.events()[-1]) == [(PURPOSE_SYSTEM, "HOPERAT")]
