"""Granular SMART scopes over HTTP, on SQLite and PostgreSQL (SMART App Launch 2.0 §3.0.2):
a token with ``Observation.rs?category=...|laboratory`` sees its lab Observations and no others
by any route (search, ``_summary=count``, ``_include``/``_revinclude``, chains and ``_has``,
``$everything``, read, vread, history); several granular scopes are a union, a plain one
grants everything; write letters with a condition refuse changes outside it; a condition the
server does not support grants nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from http_env import FHIR_JSON, Env, bearer, open_env

from medarchive.security.labels import LABELS

CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
LAB = f"{CATEGORY}|laboratory"
VITAL = f"{CATEGORY}|vital-signs"


def _obs(id: str, patient: str, category: str, **more: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": id, "status": "final",
            "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
            "code": {"text": category}, "subject": {"reference": f"Patient/{patient}"}, **more}


# lab-1 and vit-1 are p1's; pr-lab is referenced by lab-1 only, pr-vit by vit-1 only; the
# report refers to both Observations.
RESOURCES = [
    {"resourceType": "Patient", "id": "p1"},
    {"resourceType": "Patient", "id": "p2"},
    {"resourceType": "Practitioner", "id": "pr-lab"},
    {"resourceType": "Practitioner", "id": "pr-vit"},
    _obs("lab-1", "p1", "laboratory", performer=[{"reference": "Practitioner/pr-lab"}]),
    _obs("vit-1", "p1", "vital-signs", performer=[{"reference": "Practitioner/pr-vit"}]),
    _obs("survey-1", "p1", "survey"),
    _obs("lab-2", "p2", "laboratory"),
    {"resourceType": "DiagnosticReport", "id": "dr-1", "status": "final",
     "code": {"text": "panel"}, "subject": {"reference": "Patient/p1"},
     "result": [{"reference": "Observation/lab-1"}, {"reference": "Observation/vit-1"}]},
]
LAB_ONLY = f"user/Observation.rs?category={LAB}"
OTHERS = "user/Patient.rs user/Practitioner.rs user/DiagnosticReport.rs"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        spec: Any) -> Iterator[Env]:
    folder = tmp_path_factory.mktemp(f"granular-{request.param}")
    with open_env(request, request.param, folder, spec, max_page_size=100) as built:
        built.services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": r, "request": {"method": "PUT",
                                        "url": f"{r['resourceType']}/{r['id']}"}}
            for r in RESOURCES]})
        # a second version of vit-1, so its history has something to list
        updated = _obs("vit-1", "p1", "vital-signs", performer=[
            {"reference": "Practitioner/pr-vit"}], note=[{"text": "repeated"}])
        built.services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": updated, "request": {"method": "PUT", "url": "Observation/vit-1"}}]})
        yield built


def _get(env: Env, scope: str, path: str, patient: str | None = None) -> Any:
    token = env.token(role="physician", scope=scope, patient=patient)
    return env.client.get(f"/fhir/{path}", headers=bearer(token))


def _ids(bundle: dict[str, Any]) -> set[str]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle.get("entry") or () if "resource" in e}


def _search(env: Env, scope: str, path: str, patient: str | None = None) -> dict[str, Any]:
    response = _get(env, scope, path, patient)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_search_and_count_see_only_the_granted_category(env: Env) -> None:
    found = _search(env, LAB_ONLY, "Observation?_total=accurate")
    assert _ids(found) == {"Observation/lab-1", "Observation/lab-2"}
    assert found["total"] == 2
    assert _search(env, LAB_ONLY, "Observation?_summary=count")["total"] == 2
    assert _search(env, LAB_ONLY, "Observation?subject=Patient/p1&_summary=count")["total"] == 1


def test_patient_context(env: Env) -> None:
    scope = f"patient/Observation.rs?category={LAB} patient/Patient.rs"
    assert _ids(_search(env, scope, "Observation?subject=Patient/p1", patient="p1")) == {
        "Observation/lab-1"}
    assert _ids(_search(env, scope, "Patient/p1/$everything", patient="p1")) == {
        "Patient/p1", "Observation/lab-1"}
    assert _ids(_search(env, scope, "Patient/p1/Observation", patient="p1")) == {
        "Observation/lab-1"}


def test_include_and_revinclude_leave_out_the_rest(env: Env) -> None:
    scope = f"{LAB_ONLY} {OTHERS}"
    included = _search(env, scope, "DiagnosticReport?_include=DiagnosticReport:result")
    assert _ids(included) == {"DiagnosticReport/dr-1", "Observation/lab-1"}
    revincluded = _search(env, scope, "Patient?_id=p1&_revinclude=Observation:subject")
    assert _ids(revincluded) == {"Patient/p1", "Observation/lab-1"}


def test_chains_and_has_test_only_granted_resources(env: Env) -> None:
    scope = f"{LAB_ONLY} {OTHERS}"
    # p1 has a vital-signs Observation, but this token may not search those
    assert _ids(_search(env, scope, f"Patient?_has:Observation:subject:category={VITAL}")) \
        == set()
    assert _ids(_search(env, scope, f"Patient?_has:Observation:subject:category={LAB}")) == {
        "Patient/p1", "Patient/p2"}
    chained = _search(env, scope, f"DiagnosticReport?result.category={VITAL}")
    assert _ids(chained) == set()


def test_everything_leaves_out_the_rest_and_what_only_it_refers_to(env: Env) -> None:
    found = _search(env, f"{LAB_ONLY} {OTHERS}", "Patient/p1/$everything")
    assert _ids(found) == {"Patient/p1", "Observation/lab-1", "Practitioner/pr-lab",
                           "DiagnosticReport/dr-1"}
    assert found["total"] == 4


def test_reads_outside_the_grant_are_not_found(env: Env) -> None:
    assert _get(env, LAB_ONLY, "Observation/lab-1").status_code == 200
    assert _get(env, LAB_ONLY, "Observation/vit-1").status_code == 404
    assert _get(env, LAB_ONLY, "Observation/vit-1/_history/1").status_code == 404
    assert _get(env, LAB_ONLY, "Observation/vit-1/_history").status_code == 404
    assert _get(env, LAB_ONLY, "Observation/lab-1/_history/1").status_code == 200


def test_history_lists_only_granted_versions(env: Env) -> None:
    # entitled to every label, so that only the scope can hide anything
    env.services.security.access.entitle("physician-all", LABELS)
    token = env.token(role="physician", scope=LAB_ONLY, subject="physician-all")
    found = env.client.get("/fhir/Observation/_history", headers=bearer(token)).json()
    assert _ids(found) == {"Observation/lab-1", "Observation/lab-2"}
    assert "total" not in found  # as with labels: hidden versions are not counted
    assert len(found["entry"]) == 2
    hidden = env.client.get("/fhir/Observation/vit-1/_history", headers=bearer(token))
    assert hidden.status_code == 404


def test_two_granular_scopes_are_a_union(env: Env) -> None:
    scope = f"{LAB_ONLY} user/Observation.rs?category={VITAL}"
    found = _search(env, scope, "Observation?subject=Patient/p1")
    assert _ids(found) == {"Observation/lab-1", "Observation/vit-1"}
    assert _get(env, scope, "Observation/survey-1").status_code == 404


def test_all_conditions_of_one_scope_must_hold(env: Env) -> None:
    scope = f"user/Observation.rs?category={LAB}&subject=Patient/p2"  # reference: unsupported
    assert _get(env, scope, "Observation").status_code == 403
    both = f"user/Observation.rs?category={LAB}&status=final&_id=lab-2"
    assert _ids(_search(env, both, "Observation")) == {"Observation/lab-2"}


def test_granular_and_plain_grant_everything(env: Env) -> None:
    scope = f"{LAB_ONLY} user/Observation.rs"
    found = _search(env, scope, "Observation?subject=Patient/p1")
    assert _ids(found) == {"Observation/lab-1", "Observation/vit-1", "Observation/survey-1"}
    assert _get(env, scope, "Observation/vit-1").status_code == 200


@pytest.mark.parametrize("condition", [
    "value-string=x",            # a string parameter
    f"category:in={CATEGORY}",   # a modifier
    "subject.name=x",            # a chain
    "nonsense=1",                # no such parameter
    "category=a|b|c",            # a malformed token
])
def test_unsupported_conditions_grant_nothing(env: Env, condition: str) -> None:
    scope = f"user/Observation.rs?{condition} user/Patient.rs"
    response = _get(env, scope, "Observation")
    assert response.status_code == 403
    assert "insufficient_scope" in response.headers["WWW-Authenticate"]
    assert _get(env, scope, "Observation/lab-1").status_code == 403
    assert _get(env, scope, "Patient/p1").status_code == 200


def _write(env: Env, scope: str, method: str, path: str,
           body: dict[str, Any] | None = None) -> Any:
    token = env.token(role="physician", scope=scope)
    return env.client.request(method, f"/fhir/{path}", headers=bearer(
        token, **{"Content-Type": FHIR_JSON}), json=body)


def test_writes_must_stay_inside_the_grant(env: Env) -> None:
    scope = f"user/Observation.cud?category={LAB}"
    created = _write(env, scope, "POST", "Observation", _obs("x", "p2", "laboratory"))
    assert created.status_code == 201, created.text
    new_id = created.json()["id"]
    refused = _write(env, scope, "POST", "Observation", _obs("x", "p2", "vital-signs"))
    assert refused.status_code == 403
    assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]  # RFC 6750
    # an update may neither take a resource out of the grant nor take one in
    moved_out = _write(env, scope, "PUT", f"Observation/{new_id}",
                       _obs(new_id, "p2", "vital-signs"))
    assert moved_out.status_code == 403
    taken_in = _write(env, scope, "PUT", "Observation/vit-1", _obs("vit-1", "p1", "laboratory"))
    assert taken_in.status_code == 403
    assert _write(env, scope, "DELETE", "Observation/vit-1").status_code == 403
    assert _write(env, scope, "DELETE", f"Observation/{new_id}").status_code in (200, 204)
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _obs("t-1", "p2", "vital-signs"),
         "request": {"method": "PUT", "url": "Observation/t-1"}}]}
    assert _write(env, scope, "POST", "", transaction).status_code == 403
    admin = env.token(role="administrator", scope="user/*.cruds")
    assert env.client.get("/fhir/Observation/vit-1", headers=bearer(admin)).json()[
        "category"][0]["coding"][0]["code"] == "vital-signs"
