"""Relationship rules over HTTP, on SQLite and PostgreSQL: physicians, nurses and pharmacists
see a patient's compartment only through a current Encounter of their department (by
serviceProvider or by a Location of the department), or as participants of an Encounter or
CareTeam of the patient; searches, counts, reads, ``$everything`` and writes agree."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from http_env import FHIR_JSON, Env, bearer, open_env


def encounter(id: str, patient: str, status: str, *, org: str | None = None,
              location: str | None = None, practitioner: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Encounter", "id": id, "status": status,
                            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                      "code": "IMP"},
                            "subject": {"reference": f"Patient/{patient}"}}
    if org:
        body["serviceProvider"] = {"reference": f"Organization/{org}"}
    if location:
        body["location"] = [{"location": {"reference": f"Location/{location}"}}]
    if practitioner:
        body["participant"] = [{"individual": {"reference": f"Practitioner/{practitioner}"}}]
    return body


def observation(patient: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": f"o-{patient}", "status": "final",
            "code": {"text": "pulse"}, "subject": {"reference": f"Patient/{patient}"}}


PATIENTS = ("pa", "pb", "pc", "pd", "pe", "pz")


def seed(env: Env) -> None:
    resources: list[dict[str, Any]] = [
        {"resourceType": "Organization", "id": "dept-a"},
        {"resourceType": "Organization", "id": "dept-b"},
        {"resourceType": "Location", "id": "loc-a",
         "managingOrganization": {"reference": "Organization/dept-a"}},
        {"resourceType": "Practitioner", "id": "prac-1"},
        encounter("e-pa", "pa", "in-progress", org="dept-a"),
        encounter("e-pb", "pb", "finished", org="dept-a"),
        {"resourceType": "CareTeam", "id": "ct-pc", "subject": {"reference": "Patient/pc"},
         "participant": [{"member": {"reference": "Practitioner/prac-1"}}]},
        encounter("e-pd", "pd", "finished", practitioner="prac-1"),
        encounter("e-pe", "pe", "arrived", org="dept-b", location="loc-a"),
        encounter("e-pz", "pz", "in-progress", org="dept-b")]
    resources += [{"resourceType": "Patient", "id": p} for p in PATIENTS]
    resources += [observation(p) for p in PATIENTS]
    env.services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
        for r in resources]})
    access = env.services.security.access
    access.set_attribute("dora", "department", ["dept-a"])
    access.set_attribute("paul", "practitioner", ["prac-1"])


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        spec: Any) -> Iterator[Env]:
    folder = tmp_path_factory.mktemp(f"relations-{request.param}")
    with open_env(request, request.param, folder, spec,
                  access_relationship_required=True) as built:
        seed(built)
        yield built


def who(env: Env, name: str, role: str = "physician") -> dict[str, str]:
    return bearer(env.token(role=role, scope="user/*.cruds", subject=name))


def ids(bundle: dict[str, Any]) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry") or () if "resource" in e}


def get(env: Env, path: str, headers: dict[str, str]) -> Any:
    return env.client.get("/fhir/" + path, headers=headers)


@pytest.mark.parametrize(("name", "role", "related"), [
    ("dora", "physician", {"pa", "pe"}),  # current encounters of dept-a (by org, by location)
    ("paul", "nurse", {"pc", "pd"}),  # care team and encounter participant
    ("paul", "pharmacist", {"pc", "pd"}),
    ("nobody", "physician", set()),
    ("ada", "administrator", set(PATIENTS)),  # not a relationship role
])
def test_searches_are_narrowed(env: Env, name: str, role: str, related: set[str]) -> None:
    headers = who(env, name, role)
    patients = get(env, "Patient", headers).json()
    assert ids(patients) == related and patients["total"] == len(related)
    observations = get(env, "Observation?_summary=count", headers).json()
    assert observations["total"] == len(related)
    assert ids(get(env, "Observation", headers).json()) == {f"o-{p}" for p in related}
    system = ids(get(env, "?_type=Patient,Observation", headers).json())
    assert system == related | {f"o-{p}" for p in related}
    assert ids(get(env, "Organization", headers).json()) == {"dept-a", "dept-b"}


def test_unrelated_patients_are_not_found(env: Env) -> None:
    dora = who(env, "dora")
    assert get(env, "Patient/pa", dora).status_code == 200
    assert get(env, "Observation/o-pa", dora).status_code == 200
    for path in ("Patient/pz", "Observation/o-pz", "Patient/pz/$everything",
                 "Patient/pz/_history", "Observation/o-pz/_history/1"):
        assert get(env, path, dora).status_code == 404, path
    assert get(env, "Patient/pz/Observation", dora).json().get("total") == 0
    assert ids(get(env, "Patient?_id=pz,pa", dora).json()) == {"pa"}
    everything = get(env, "Patient/pa/$everything", dora).json()
    assert {"pa", "o-pa", "e-pa"} <= ids(everything)
    assert get(env, "Observation/_history", dora).status_code == 403


def test_writes_need_a_relationship(env: Env) -> None:
    dora = {**who(env, "dora"), "Content-Type": FHIR_JSON}
    body = {"resourceType": "Observation", "status": "final", "code": {"text": "bp"},
            "subject": {"reference": "Patient/pz"}}
    assert env.client.post("/fhir/Observation", json=body, headers=dora).status_code == 403
    body["subject"] = {"reference": "Patient/pa"}
    assert env.client.post("/fhir/Observation", json=body, headers=dora).status_code == 201
    registered = env.client.post("/fhir/Patient", json={"resourceType": "Patient"},
                                 headers=dora)
    assert registered.status_code == 201  # registering a new patient needs no relationship


def test_new_relationships_count_at_once(env: Env) -> None:
    nina = who(env, "nina", "nurse")
    env.services.security.access.set_attribute("nina", "practitioner", ["prac-9"])
    assert ids(get(env, "Patient?_id=pz", nina).json()) == set()
    team = {"resourceType": "CareTeam", "id": "ct-pz", "subject": {"reference": "Patient/pz"},
            "participant": [{"member": {"reference": "Practitioner/prac-9"}}]}
    env.services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": team, "request": {"method": "PUT", "url": "CareTeam/ct-pz"}}]})
    assert ids(get(env, "Patient?_id=pz", nina).json()) == {"pz"}
    assert get(env, "Observation/o-pz", nina).status_code == 200


def test_the_rule_can_be_switched_off(env: Env) -> None:
    abac = env.services.security.guard.abac
    abac.relationship_required = False
    try:
        assert ids(get(env, "Patient", who(env, "nobody")).json()) >= set(PATIENTS)
    finally:
        abac.relationship_required = True
    assert ids(get(env, "Patient", who(env, "nobody")).json()) == set()


def test_chains_and_has_only_reach_related_patients(env: Env) -> None:
    dora = who(env, "dora")
    has = "Organization?_has:Encounter:service-provider:status=in-progress"
    assert ids(get(env, has, dora).json()) == {"dept-a"}  # e-pz (dept-b) is unrelated
    assert ids(get(env, has, who(env, "ada", "administrator")).json()) == {"dept-a", "dept-b"}
    chain = "Encounter?patient:Patient._id=pz,pa"
    assert ids(get(env, chain, dora).json()) == {"e-pa"}
