"""Type-level ``Patient/$everything``, its ``start``/``end`` care-date range (R4
OperationDefinition Patient-everything) and compartment search by ``POST .../_search``
(R4 §3.1.1.1), through the router on every backend."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from medarchive.errors import Forbidden
from medarchive.security.actor import Actor, acting
from medarchive.security.authz import Policy
from medarchive.security.guard import Guard, classify
from medarchive.security.scopes import parse_scopes
from medarchive.service.repository import Repository
from medarchive.service.request import FhirRequest, FhirResponse

FORM = "application/x-www-form-urlencoded"


def ref(target: str) -> dict[str, str]:
    return {"reference": target}


def observation(id: str, patient: str, when: str, code: str = "hr", **more: Any
                ) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": id, "status": "final", "code": {"text": code},
            "subject": ref(f"Patient/{patient}"), "effectiveDateTime": when, **more}


RECORDS: list[dict[str, Any]] = [
    {"resourceType": "Organization", "id": "org1", "name": "General"},
    {"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "House"}]},
    {"resourceType": "Practitioner", "id": "dr2", "name": [{"family": "Grey"}]},
    {"resourceType": "Location", "id": "ward", "name": "Ward 1"},
    {"resourceType": "Patient", "id": "p1", "managingOrganization": ref("Organization/org1")},
    {"resourceType": "Patient", "id": "p2"},
    {"resourceType": "Encounter", "id": "e2019", "status": "finished", "class": {"code": "AMB"},
     "subject": ref("Patient/p1"), "period": {"start": "2019-05-01", "end": "2019-05-02"},
     "participant": [{"individual": ref("Practitioner/dr1")}]},
    {"resourceType": "Encounter", "id": "e2021", "status": "finished", "class": {"code": "AMB"},
     "subject": ref("Patient/p1"), "period": {"start": "2021-12-31T22:00:00Z"},
     "participant": [{"individual": ref("Practitioner/dr2")}]},
    observation("o2019", "p1", "2019-05-01T10:00:00Z"),
    observation("o2020", "p1", "2020-06", code="bp"),
    observation("o2022", "p1", "2022-01-10"),
    {"resourceType": "Observation", "id": "undated", "status": "final", "code": {"text": "x"},
     "subject": ref("Patient/p1")},
    {"resourceType": "Condition", "id": "c2020", "subject": ref("Patient/p1"),
     "onsetDateTime": "2020-02-02", "recordedDate": "2023-01-01"},
    {"resourceType": "Coverage", "id": "cov", "status": "active",
     "beneficiary": ref("Patient/p1"), "payor": [ref("Organization/org1")]},
    observation("o-p2", "p2", "2020-06-01", encounter=None),
    {"resourceType": "Encounter", "id": "e-p2", "status": "finished", "class": {"code": "AMB"},
     "subject": ref("Patient/p2"), "location": [{"location": ref("Location/ward")}]},
]


@pytest.fixture
def records(call: Any) -> None:
    for resource in RECORDS:
        resource = {k: v for k, v in resource.items() if v is not None}
        response = call("PUT", f"{resource['resourceType']}/{resource['id']}", resource)
        assert response.status == 201, response.content()


def parsed(response: FhirResponse) -> Any:
    assert response.status == 200, response.content()
    return orjson.loads(response.content())


def found(bundle: dict[str, Any]) -> set[str]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle.get("entry", []) if e["search"]["mode"] == "match"}


def links(bundle: dict[str, Any]) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle.get("link", [])}


def outcome(response: FhirResponse, status: int) -> str:
    assert response.status == status, response.content()
    body = orjson.loads(response.content())
    assert body["resourceType"] == "OperationOutcome"
    return str(body["issue"][0]["diagnostics"])


P1 = {"Patient/p1", "Organization/org1", "Practitioner/dr1", "Practitioner/dr2",
      "Encounter/e2019", "Encounter/e2021", "Observation/o2019", "Observation/o2020",
      "Observation/o2022", "Observation/undated", "Condition/c2020", "Coverage/cov"}
P2 = {"Patient/p2", "Observation/o-p2", "Encounter/e-p2", "Location/ward"}


def everything(call: Any, path: str = "Patient/p1/$everything", **params: str) -> set[str]:
    bundle = parsed(call("GET", path, query=[("_count", "50"), *params.items()]))
    assert bundle["total"] == len(found(bundle))
    return found(bundle)


def test_type_level_everything_is_every_patient(call: Any, records: None) -> None:
    assert everything(call, "Patient/$everything") == P1 | P2
    assert everything(call, "Patient/$everything", _type="Patient,Location") == {
        "Patient/p1", "Patient/p2", "Location/ward"}
    page = parsed(call("GET", "Patient/$everything", query=[("_count", "5")]))
    assert page["total"] == len(P1 | P2) and links(page)["self"].startswith(
        "http://test/fhir/Patient/$everything?")
    seen = found(page)
    while "next" in links(page):
        url = links(page)["next"].split("?", 1)[1]
        query = [tuple(part.split("=", 1)) for part in url.split("&")]
        page = parsed(call("GET", "Patient/$everything", query=query))
        seen |= found(page)
    assert seen == P1 | P2
    assert call("POST", "Patient/$everything").status == 405


def test_type_level_everything_leaves_out_unlinked_resources(call: Any, records: None) -> None:
    lone = {"resourceType": "Practitioner", "id": "nobody", "name": [{"family": "Lone"}]}
    assert call("PUT", "Practitioner/nobody", lone).status == 201
    assert "Practitioner/nobody" not in everything(call, "Patient/$everything")


def test_start_and_end_keep_records_whose_care_date_overlaps(call: Any, records: None) -> None:
    in2020 = everything(call, start="2020-01-01", end="2020-12-31")
    assert in2020 == {"Patient/p1", "Organization/org1", "Observation/o2020",
                      "Condition/c2020", "Coverage/cov"}  # undated types are kept
    since2021 = everything(call, start="2021")  # an open end: the end of time
    assert since2021 == {"Patient/p1", "Organization/org1", "Coverage/cov", "Encounter/e2021",
                         "Practitioner/dr2", "Observation/o2022",
                         "Condition/c2020"}  # recorded 2023; e2021 runs on (open period)
    until2019 = everything(call, end="2019-12")
    assert until2019 == {"Patient/p1", "Organization/org1", "Coverage/cov", "Encounter/e2019",
                         "Practitioner/dr1", "Observation/o2019"}
    assert "Observation/undated" not in in2020 | since2021 | until2019
    day = everything(call, start="2019-05-01T12:00:00Z", end="2019-05-01T12:00:00Z")
    assert "Encounter/e2019" in day and "Observation/o2019" not in day  # 10:00 only
    assert everything(call, "Patient/$everything", start="2020-06-01", end="2020-06-01") >= {
        "Observation/o2020", "Observation/o-p2", "Patient/p2"}
    bundle = parsed(call("GET", "Patient/p1/$everything", query=[("start", "2020"),
                                                                 ("_count", "2")]))
    assert "start=2020" in links(bundle)["next"]


def test_bad_ranges_are_refused(call: Any, records: None) -> None:
    assert "start" in outcome(call("GET", "Patient/p1/$everything",
                                   query=[("start", "2021"), ("end", "2020")]), 400)
    outcome(call("GET", "Patient/p1/$everything", query=[("end", "last week")]), 400)
    outcome(call("GET", "Patient/$everything", query=[("_type", "Nonsense")]), 400)


def test_compartment_search_by_post(call: Any, records: None) -> None:
    body = b"code:text=bp&_count=10"
    posted = parsed(call("POST", "Patient/p1/Observation/_search", body, content_type=FORM))
    got = parsed(call("GET", "Patient/p1/Observation", query=[("code:text", "bp"),
                                                               ("_count", "10")]))
    assert found(posted) == found(got) == {"Observation/o2020"}
    assert posted["total"] == 1 and "code:text=bp" in links(posted)["self"]
    both = parsed(call("POST", "Patient/p1/Observation/_search", b"code:text=hr",
                       query=[("date", "ge2020")], content_type=FORM))  # URL and body AND
    assert found(both) == {"Observation/o2022"}
    every = parsed(call("POST", "Patient/p2/*/_search", b"_count=50", content_type=FORM))
    assert found(every) == {"Observation/o-p2", "Encounter/e-p2", "Patient/p2"} & found(
        parsed(call("GET", "Patient/p2/*", query=[("_count", "50")])))
    assert found(parsed(call("POST", "Patient/p2/Observation/_search"))) == {
        "Observation/o-p2"}  # no body: the URL's parameters alone


def test_compartment_post_errors_are_operation_outcomes(call: Any, records: None) -> None:
    assert "x-www-form-urlencoded" in outcome(call(
        "POST", "Patient/p1/Observation/_search", b'{"code": "x"}',
        content_type="application/json"), 400)
    outcome(call("POST", "Patient/p1/Practitioner/_search", b"", content_type=FORM), 400)
    outcome(call("POST", "Patient/p1/Observation/_search", b"date=yesterday",
                 content_type=FORM), 400)
    assert call("GET", "Patient/p1/Observation/_search").status == 405
    outcome(call("POST", "Patient/p1/Observation/_search", b"nonsense=1", content_type=FORM,
                 prefer="handling=strict"), 400)


def test_guard_confines_type_level_everything_and_posts(
        call: Any, records: None, repository: Repository, spec: Any) -> None:
    repository.guard = Guard(Policy(), trail=None, spec=spec)  # type: ignore[arg-type]
    nurse = Actor("user", "n1", "nurse", parse_scopes("user/Patient.rs user/Encounter.rs")[0])
    with acting(nurse):
        assert everything(call, "Patient/$everything") == {
            "Patient/p1", "Patient/p2", "Encounter/e2019", "Encounter/e2021", "Encounter/e-p2"}
    patient = Actor("user", "u1", "patient", parse_scopes("patient/*.rs")[0], patient="p1")
    guard = repository.guard
    with acting(patient):
        with pytest.raises(Forbidden):  # over HTTP the guard refuses it before the router
            guard.authorize(patient, classify("GET", "Patient/$everything"),
                            FhirRequest("GET", "Patient/$everything"))
        own = everything(call, "Patient/$everything")  # and the router narrows it anyway
        assert own == P1 - {"Organization/org1", "Practitioner/dr1", "Practitioner/dr2"}
        posted = parsed(call("POST", "Patient/p2/Observation/_search", b"", content_type=FORM))
        assert found(posted) == set()  # another patient's compartment: nothing
        widening = FhirRequest("POST", "Patient/p1/Observation/_search", (),
                               {"content-type": FORM}, b"_include=Observation:subject")
        with pytest.raises(Forbidden):  # widening parameters, also in a form body
            guard.authorize(patient, classify("POST", widening.path), widening)
        plain = replace(widening, body=b"code:text=bp")
        guard.authorize(patient, classify("POST", plain.path), plain)
