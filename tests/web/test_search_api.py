"""Search over HTTP (R4 §3.1.1): includes, compartment search (§3.1.0.7), Patient/$everything
and the CapabilityStatement claims, through the ASGI app."""

from __future__ import annotations

from typing import Any

import pytest

FHIR = {"content-type": "application/fhir+json"}


@pytest.fixture
def loaded(client: Any) -> Any:
    records = [
        {"resourceType": "Practitioner", "id": "dr1"},
        {"resourceType": "Patient", "id": "p1", "generalPractitioner": [
            {"reference": "Practitioner/dr1"}]},
        {"resourceType": "Patient", "id": "p2"},
        *({"resourceType": "Observation", "id": f"o{n}", "status": "final",
           "code": {"text": "hr"}, "subject": {"reference": f"Patient/p{1 + n % 2}"}}
          for n in range(6)),
    ]
    for resource in records:
        response = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}",
                              json=resource, headers=FHIR)
        assert response.status_code == 201, response.text
    return client


def ids(bundle: dict[str, Any], mode: str = "match") -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", []) if e["search"]["mode"] == mode}


def test_include_over_get_and_post(loaded: Any) -> None:
    got = loaded.get("/fhir/Patient?_id=p1&_include=Patient:general-practitioner"
                     "&_revinclude=Observation:subject").json()
    assert ids(got) == {"p1"} and ids(got, "include") == {"dr1", "o0", "o2", "o4"}
    posted = loaded.post("/fhir/Patient/_search", content=b"_id=p1&_include=Patient:"
                         b"general-practitioner", headers={
                             "content-type": "application/x-www-form-urlencoded"}).json()
    assert ids(posted) == {"p1"} and ids(posted, "include") == {"dr1"}


def test_compartment_and_everything(loaded: Any) -> None:
    compartment = loaded.get("/fhir/Patient/p2/Observation").json()
    assert compartment["total"] == 3 and ids(compartment) == {"o1", "o3", "o5"}
    first = loaded.get("/fhir/Patient/p1/$everything?_count=2").json()
    assert first["total"] == 5 and len(first["entry"]) == 2
    seen = ids(first)
    page = first
    while any(link["relation"] == "next" for link in page["link"]):
        url = next(link["url"] for link in page["link"] if link["relation"] == "next")
        page = loaded.get(url.removeprefix("http://testserver")).json()
        seen |= ids(page)
    assert seen == {"p1", "dr1", "o0", "o2", "o4"}
    assert loaded.get("/fhir/Patient/p1/$everything?_type=Practitioner").json()[
        "entry"][0]["resource"]["id"] == "dr1"
    assert loaded.get("/fhir/Patient/zz/$everything").status_code == 404


def test_compartment_post_and_type_level_everything(loaded: Any) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    posted = loaded.post("/fhir/Patient/p2/Observation/_search", content=b"code:text=hr",
                         headers=form)
    assert posted.status_code == 200 and ids(posted.json()) == {"o1", "o3", "o5"}
    every = loaded.post("/fhir/Patient/p1/*/_search", content=b"_count=50", headers=form)
    assert ids(every.json()) == {"o0", "o2", "o4"}  # members by the links, as GET
    refused = loaded.post("/fhir/Patient/p2/Observation/_search", content=b"date=soon",
                          headers=form)
    assert refused.status_code == 400 and refused.json()["resourceType"] == "OperationOutcome"
    everyone = loaded.get("/fhir/Patient/$everything?_count=50").json()
    assert everyone["total"] == 9 and ids(everyone) == {"p1", "p2", "dr1"} | {
        f"o{n}" for n in range(6)}
    ranged = loaded.get("/fhir/Patient/$everything?start=2020&end=2020&_count=50").json()
    assert ids(ranged) == {"p1", "p2", "dr1"}  # the observations have no care date


def test_summary_count_and_strict(loaded: Any) -> None:
    counted = loaded.get("/fhir/Observation?subject=Patient/p1&_summary=count").json()
    assert counted["total"] == 3 and not counted.get("entry")
    strict = loaded.get("/fhir/Observation?bogus=1", headers={"prefer": "handling=strict"})
    assert strict.status_code == 400
    assert strict.json()["resourceType"] == "OperationOutcome"


def test_capability_claims_what_works(memory_client: Any) -> None:
    statement = memory_client.get("/fhir/metadata").json()
    patient = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Patient")
    assert "Patient:general-practitioner" in patient["searchInclude"]
    assert "Observation:subject" in patient["searchRevInclude"]
    assert {"validate", "everything", "export"} == {o["name"] for o in patient["operation"]}
