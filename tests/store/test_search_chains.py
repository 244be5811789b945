"""Chains (R4 Search §3.1.1.5.11), reverse chains (§3.1.1.5.12), _list, compartments and the
include step (§3.1.1.5.14), on every backend."""

from __future__ import annotations

from typing import Any

import pytest
from search_helpers import delete, find, indexer, observation, patient, put, spec

from medarchive.errors import BadRequest
from medarchive.fhir.compartments import compartment_clause
from medarchive.fhir.search.query import AnyOf, Has, Include, SearchQuery
from medarchive.store.base import Store


@pytest.fixture
def store(store_factory: Any) -> Store:
    s = store_factory(indexer())
    put(s,
        {"resourceType": "Organization", "id": "acme", "name": "Acme Hospital",
         "partOf": {"reference": "Organization/group"}},
        {"resourceType": "Organization", "id": "group", "name": "Big Group"},
        {"resourceType": "Organization", "id": "other", "name": "Other Clinic"},
        {"resourceType": "Practitioner", "id": "doc", "name": [{"family": "House"}]},
        patient("p1", name=[{"family": "Smith"}], gender="male",
                managingOrganization={"reference": "Organization/acme"},
                generalPractitioner=[{"reference": "Practitioner/doc"}]),
        patient("p2", name=[{"family": "Jones"}], gender="female",
                managingOrganization={"reference": "Organization/other"}),
        patient("p3", name=[{"family": "Smithers"}]),
        {"resourceType": "Location", "id": "w1", "name": "Smith Wing"},
        observation("o1", subject={"reference": "Patient/p1"},
                    performer=[{"reference": "Practitioner/doc"}],
                    code={"coding": [{"system": "http://loinc.org", "code": "1234-5"}]}),
        observation("o2", subject={"reference": "Patient/p2"}),
        observation("o3", subject={"reference": "Location/w1"}),
        observation("o4", subject={"reference": "Patient/p1/_history/1"},
                    hasMember=[{"reference": "Observation/o1"}]),
        observation("o5", subject={"identifier": {"system": "urn:mrn", "value": "77"}}),
        {"resourceType": "Encounter", "id": "e1", "status": "finished",
         "class": {"code": "AMB"}, "subject": {"reference": "Patient/p1"},
         "serviceProvider": {"reference": "Organization/acme"}},
        {"resourceType": "List", "id": "l1", "status": "current", "mode": "working",
         "entry": [{"item": {"reference": "Patient/p2"}}, {"item": {"reference": "Patient/p3"}}]})
    return s


def test_chains_at_any_depth(store: Store) -> None:
    assert find(store, "Observation", "subject:Patient.name=smith") == ["o1", "o4"]
    # Location has a name parameter too; Group and Device have none
    assert find(store, "Observation", "subject.name=smith") == ["o1", "o3", "o4"]
    assert find(store, "Observation", "subject:Location.name=smith") == ["o3"]
    assert find(store, "Observation", "subject.organization.name=acme") == ["o1", "o4"]
    assert find(store, "Observation", "subject.organization.partof.name=big") == ["o1", "o4"]
    assert find(store, "Observation", "subject.organization.name=acme,other") == \
        ["o1", "o2", "o4"]
    assert find(store, "Observation", "subject:Patient.gender:not=male") == ["o2"]
    assert find(store, "Observation", "subject:Patient.general-practitioner.name=house") == \
        ["o1", "o4"]
    assert find(store, "Observation", "subject.name=smith&subject.gender=male") == ["o1", "o4"]
    with pytest.raises(BadRequest):
        find(store, "Observation", "subject:Nonsense.name=x")
    with pytest.raises(BadRequest):
        find(store, "Observation", "subject:Practitioner.name=x")  # not a target of subject


def test_chain_ignores_deleted_targets(store: Store) -> None:
    delete(store, "Organization", "acme")
    assert find(store, "Patient", "organization.name=acme") == []
    assert find(store, "Patient", "organization=acme") == ["p1"]  # the reference remains


def test_reverse_chains(store: Store) -> None:
    assert find(store, "Patient", "_has:Observation:subject:code=1234-5") == ["p1"]
    assert find(store, "Patient", "_has:Observation:patient:_id=o2") == ["p2"]
    assert find(store, "Patient", "_has:Observation:subject:_has:Observation:has-member:"
                                  "_id=o4") == ["p1"]
    assert find(store, "Patient", "_has:Encounter:subject:service-provider.name=acme") == ["p1"]
    assert find(store, "Practitioner", "_has:Observation:performer:subject.name=smith") == \
        ["doc"]
    assert find(store, "Patient", "_has:Observation:subject:status=final&gender=female") == \
        ["p2"]
    assert find(store, "Patient", "_has:Observation:subject:code=nothing") == []
    with pytest.raises(BadRequest):
        find(store, "Patient", "_has:Observation:code:status=final")  # not a reference


def test_list_and_reference_identifier(store: Store) -> None:
    assert find(store, "Patient", "_list=l1") == ["p2", "p3"]
    assert find(store, "Patient", "_list=l1&name=smith") == ["p3"]
    assert find(store, "Patient", "_list=nope") == []
    assert find(store, "Observation", "subject:identifier=urn:mrn|77") == ["o5"]
    assert find(store, "Observation", "subject=Patient/p1") == ["o1", "o4"]
    assert find(store, "Observation", "subject:missing=true") == []


def test_compartment_clause(store: Store) -> None:
    members = compartment_clause(spec(), "Patient", "p1")
    query = SearchQuery(None, (members,), (), 100, 0)
    assert sorted(v.id for v in store.search(query)) == ["e1", "o1", "o4"]
    assert store.count(query) == 3
    owned = compartment_clause(spec(), "Patient", "p1", owner=True)
    with_refs = SearchQuery(None, (AnyOf((owned, Has(None, None, owned))),), (), 100, 0)
    assert sorted(v.id for v in store.search(with_refs)) == \
        ["acme", "doc", "e1", "o1", "o4", "p1"]
    typed = SearchQuery("Observation", (compartment_clause(spec(), "Patient", "p1",
                                                           ["Observation"]),))
    assert [v.id for v in store.search(typed)] == ["o1", "o4"]
    practitioner = SearchQuery(None, (compartment_clause(spec(), "Practitioner", "doc"),))
    # the Practitioner CompartmentDefinition puts the practitioner itself ({def}) in it
    assert sorted(v.id for v in store.search(practitioner)) == ["doc", "o1", "p1"]


def test_include_step(store: Store) -> None:
    def keys(*ids: str) -> list[tuple[str, str]]:
        return [("Observation", i) for i in ids]

    subject = Include("Observation", "subject")
    assert [v.id for v in store.include(keys("o1", "o2", "o4"), subject, 10)] == ["p1", "p2"]
    assert [v.id for v in store.include(keys("o3"), Include("Observation", "subject",
                                                            "Patient"), 10)] == []
    every = Include("Observation", None)
    assert sorted(v.id for v in store.include(keys("o1"), every, 10)) == ["doc", "p1"]
    reverse = Include("Observation", "subject", reverse=True)
    assert [v.id for v in store.include([("Patient", "p1")], reverse, 10)] == ["o1", "o4"]
    assert [v.id for v in store.include([("Patient", "p1")], reverse, 1)] == ["o1"]
    assert store.include([("Patient", "p1")], Include("Encounter", "subject", "Group",
                                                      reverse=True), 10) == []
    delete(store, "Patient", "p2")
    assert store.include(keys("o2"), subject, 10) == []


def test_system_search_over_several_types(store: Store) -> None:
    put(store, patient("tagged", meta={"tag": [{"system": "urn:t", "code": "x"}]}),
        observation("tagged-obs", meta={"tag": [{"system": "urn:t", "code": "x"}]}),
        {"resourceType": "Organization", "id": "tagged-org",
         "meta": {"tag": [{"system": "urn:t", "code": "x"}]}})
    assert find(store, None, "_type=Patient,Observation&_tag=urn:t|x") == \
        ["tagged", "tagged-obs"]
    assert find(store, None, "_tag=x&_sort=-_id") == ["tagged-org", "tagged-obs", "tagged"]
    assert find(store, None, "_type=Patient,Organization&_id=acme,p1,o1") == ["acme", "p1"]
    assert find(store, None, "_type=Observation&subject:Patient.name=jones") == ["o2"]
