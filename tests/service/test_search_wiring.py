"""The search engine behind the router (R4 §3.1.1): _include/_revinclude, totals, paging,
strictness, compartment search (§3.1.0.7) and Patient/$everything, narrowed by the guard."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest

from medarchive.security.actor import Actor, acting
from medarchive.security.authz import Policy
from medarchive.security.guard import Guard
from medarchive.security.scopes import parse_scopes
from medarchive.service.repository import Repository
from medarchive.service.request import FhirResponse

FORM = "application/x-www-form-urlencoded"


def ref(target: str) -> dict[str, str]:
    return {"reference": target}


RECORDS: list[dict[str, Any]] = [
    {"resourceType": "Practitioner", "id": "dr1", "name": [{"family": "House"}]},
    {"resourceType": "Organization", "id": "org1", "name": "General"},
    {"resourceType": "Patient", "id": "p1", "name": [{"family": "Smith"}],
     "generalPractitioner": [ref("Practitioner/dr1")], "managingOrganization": ref(
         "Organization/org1")},
    {"resourceType": "Patient", "id": "p2", "name": [{"family": "Jones"}]},
    {"resourceType": "Encounter", "id": "e1", "status": "finished",
     "class": {"code": "AMB"}, "subject": ref("Patient/p1"),
     "participant": [{"individual": ref("Practitioner/dr1")}]},
    {"resourceType": "Encounter", "id": "e2", "status": "finished",
     "class": {"code": "AMB"}, "subject": ref("Patient/p2")},
    {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "hr"},
     "subject": ref("Patient/p1"), "encounter": ref("Encounter/e1")},
    {"resourceType": "Observation", "id": "o2", "status": "final", "code": {"text": "hr"},
     "subject": ref("Patient/p2"), "encounter": ref("Encounter/e2")},
    {"resourceType": "Observation", "id": "o3", "status": "final", "code": {"text": "bp"},
     "subject": ref("Patient/p1")},
    {"resourceType": "Condition", "id": "c1", "subject": ref("Patient/p1"),
     "encounter": ref("Encounter/e1")},
]


@pytest.fixture
def records(call: Any) -> None:
    for resource in RECORDS:
        assert call("PUT", f"{resource['resourceType']}/{resource['id']}", resource).status \
            == 201


def parsed(response: FhirResponse) -> Any:
    assert response.status == 200, response.content()
    return orjson.loads(response.content())


def found(bundle: dict[str, Any], mode: str = "match") -> set[str]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}"
            for e in bundle.get("entry", []) if e["search"]["mode"] == mode}


def links(bundle: dict[str, Any]) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle.get("link", [])}


def follow(call: Any, url: str) -> Any:
    parts = urlsplit(url)
    return parsed(call("GET", parts.path.removeprefix("/fhir").strip("/"),
                       query=parse_qsl(parts.query, keep_blank_values=True)))


INCLUDES = [("subject", "Patient/p1"), ("_include", "Encounter:subject"),
            ("_include", "Encounter:participant"), ("_revinclude", "Condition:encounter")]


def test_include_and_revinclude_get_and_post(call: Any, records: None) -> None:
    bundle = parsed(call("GET", "Encounter", query=INCLUDES))
    assert found(bundle) == {"Encounter/e1"} and bundle["total"] == 1
    assert found(bundle, "include") == {"Patient/p1", "Practitioner/dr1", "Condition/c1"}
    assert "_include=Encounter:subject" in links(bundle)["self"]
    body = "&".join(f"{k}={v}" for k, v in INCLUDES).encode()
    posted = parsed(call("POST", "Encounter/_search", body, content_type=FORM))
    assert found(posted) == found(bundle) and found(posted, "include") == found(
        bundle, "include")


def test_include_iterate(call: Any, records: None) -> None:
    once = parsed(call("GET", "Observation", query=[
        ("_id", "o1"), ("_include", "Observation:encounter"),
        ("_include", "Encounter:participant")]))
    assert found(once, "include") == {"Encounter/e1"}
    iterated = parsed(call("GET", "Observation", query=[
        ("_id", "o1"), ("_include", "Observation:encounter"),
        ("_include:iterate", "Encounter:participant")]))
    assert found(iterated, "include") == {"Encounter/e1", "Practitioner/dr1"}


def test_total_modes_and_summary_count(call: Any, records: None) -> None:
    query = [("status", "final")]
    assert parsed(call("GET", "Observation", query=query))["total"] == 3
    assert "total" not in parsed(call("GET", "Observation", query=[*query, ("_total", "none")]))
    estimated = parsed(call("GET", "Observation", query=[*query, ("_total", "estimate")]))
    assert isinstance(estimated["total"], int)  # PostgreSQL's planner guess, else exact
    assert len(estimated["entry"]) == 3
    counted = parsed(call("GET", "Observation", query=[*query, ("_summary", "count")]))
    assert counted["total"] == 3 and counted["entry"] == []
    assert call("GET", "Observation", query=[("_total", "some")]).status == 400


def test_paging_links_walk_every_match_once(call: Any, records: None) -> None:
    page = parsed(call("GET", "Observation", query=[("_count", "1"), ("_total", "accurate")]))
    assert "last" in links(page) and "previous" not in links(page)
    seen = list(found(page))
    while "next" in links(page):
        page = follow(call, links(page)["next"])
        assert "previous" in links(page) and "_count=1" in links(page)["self"]
        seen += list(found(page))
    assert sorted(seen) == ["Observation/o1", "Observation/o2", "Observation/o3"]


def test_strict_and_lenient_handling(call: Any, records: None) -> None:
    lenient = parsed(call("GET", "Observation", query=[("nonsense", "1"),
                                                       ("_contained", "true")]))
    assert lenient["total"] == 3 and "nonsense" not in links(lenient)["self"]
    strict = call("GET", "Observation", query=[("nonsense", "1")], prefer="handling=strict")
    assert strict.status == 400
    assert call("GET", "Observation", prefer="handling=sloppy").status == 400


def test_system_search_with_several_types(call: Any, records: None) -> None:
    bundle = parsed(call("GET", "", query=[("_type", "Patient,Practitioner")]))
    assert found(bundle) == {"Patient/p1", "Patient/p2", "Practitioner/dr1"}


def test_compartment_search(call: Any, records: None) -> None:
    assert found(parsed(call("GET", "Patient/p1/Observation"))) == {
        "Observation/o1", "Observation/o3"}
    narrowed = parsed(call("GET", "Patient/p1/Observation", query=[("code:text", "bp")]))
    assert found(narrowed) == {"Observation/o3"}
    assert found(parsed(call("GET", "Patient/p1/*"))) == {  # members by the definition's links
        "Encounter/e1", "Observation/o1", "Observation/o3", "Condition/c1"}
    assert found(parsed(call("GET", "Encounter/e1/Observation"))) == {"Observation/o1"}
    assert call("GET", "Patient/p1/Practitioner").status == 400  # not in the compartment
    assert call("POST", "Patient/p1/Observation").status == 405


def test_everything(call: Any, records: None) -> None:
    bundle = parsed(call("GET", "Patient/p1/$everything", query=[("_count", "50")]))
    assert found(bundle) == {"Patient/p1", "Encounter/e1", "Observation/o1", "Observation/o3",
                             "Condition/c1", "Practitioner/dr1", "Organization/org1"}
    assert bundle["total"] == 7
    typed = parsed(call("GET", "Patient/p1/$everything", query=[("_type", "Observation")]))
    assert found(typed) == {"Observation/o1", "Observation/o3"}
    later = parsed(call("GET", "Patient/p1/$everything", query=[("_since", "2999")]))
    assert found(later) == set() and later["total"] == 0
    page = parsed(call("GET", "Patient/p1/$everything", query=[("_count", "3")]))
    seen = list(found(page))
    while "next" in links(page):
        page = follow(call, links(page)["next"])
        seen += list(found(page))
    assert len(seen) == 7 and set(seen) == found(bundle)
    assert call("GET", "Patient/nope/$everything").status == 404
    assert call("GET", "Patient/p1/$everything", query=[("_since", "x")]).status == 400
    assert call("GET", "Patient/p1/$everything", query=[("start", "2020x")]).status == 400


def guarded(repository: Repository, spec: Any) -> None:
    repository.guard = Guard(Policy(), trail=None, spec=spec)  # type: ignore[arg-type]


def test_includes_and_counts_never_leak(call: Any, records: None, repository: Repository,
                                        spec: Any) -> None:
    guarded(repository, spec)
    nurse = Actor("user", "n1", "nurse", parse_scopes(
        "user/Encounter.rs user/Patient.rs user/Condition.rs")[0])
    with acting(nurse):
        bundle = parsed(call("GET", "Encounter", query=INCLUDES))
        assert found(bundle, "include") == {"Patient/p1", "Condition/c1"}  # no Practitioner
        assert call("GET", "Patient/p1/Observation").status == 403
        assert call("GET", "Patient", query=[("_has:Observation:subject:code:text",
                                               "bp")]).status == 403
        assert call("GET", "Encounter", query=[("participant:Practitioner.name",
                                                 "house")]).status == 403
        assert found(parsed(call("GET", "Encounter", query=[
            ("subject:Patient.name", "smith")]))) == {"Encounter/e1"}
        mixed = parsed(call("GET", "Patient/p1/*"))
        assert found(mixed) == {"Encounter/e1", "Condition/c1"}  # no Observation
    patient = Actor("user", "u1", "patient", parse_scopes("patient/*.rs")[0], patient="p1")
    with acting(patient):
        counted = parsed(call("GET", "Observation", query=[("_summary", "count")]))
        assert counted["total"] == 2  # only p1's observations are counted
        final = [("status", "http://hl7.org/fhir/observation-status|final")]
        for extra in ([("_summary", "count")], [("_count", "1"), ("_total", "accurate")]):
            assert parsed(call("GET", "Observation", query=[*final, *extra]))["total"] == 2
        assert found(parsed(call("GET", "Patient/p2/Observation"))) == set()
        assert found(parsed(call("GET", "Patient/p1/$everything"))) == {  # compartment only
            "Patient/p1", "Encounter/e1", "Observation/o1", "Observation/o3", "Condition/c1"}
