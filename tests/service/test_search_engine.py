"""``service.search_engine``: search with includes, totals, paging and strictness, compartment
search and ``Patient/$everything`` (R4 Search §3.1.1, §3.1.0.7), on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest

from medarchive.errors import BadRequest, Gone, NotFound
from medarchive.fhir.search.parse import parse_search
from medarchive.fhir.search.query import SearchQuery
from medarchive.service import search_engine
from medarchive.service.search_engine import (
    SearchResult,
    compartment_search,
    everything,
    execute_search,
)
from medarchive.store.base import Change, Store
from medarchive.store.sql.store import SqlStore

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def put(store: Store, *resources: dict[str, Any], when: datetime = T0) -> None:
    changes = []
    for n, r in enumerate(resources):
        current = store.read(r["resourceType"], r["id"])
        version = current.version_id if current else 0
        changes.append(Change(r["resourceType"], r["id"], version + 1, version,
                              when + timedelta(seconds=n), False, orjson.dumps(r), r))
    store.write(changes)


def search(store: Store, spec: Any, rtype: str | None, query: str, *, strict: bool = False,
           max_include: int = 1000) -> SearchResult:
    return execute_search(store, spec, rtype, parse_qsl(query), default_count=3, max_count=5,
                          strict=strict, max_include=max_include)


def ids(versions: Any) -> list[str]:
    return [v.id for v in versions]


@pytest.fixture
def hospital(store: Store) -> Store:
    put(store,
        {"resourceType": "Organization", "id": "org", "name": "Acme"},
        {"resourceType": "Practitioner", "id": "doc", "name": [{"family": "House"}]},
        {"resourceType": "Medication", "id": "med", "code": {"text": "Aspirin"}},
        *({"resourceType": "Patient", "id": f"p{n}", "gender": "male" if n % 2 else "female",
           "birthDate": f"19{50 + n}", "managingOrganization": {"reference": "Organization/org"},
           "generalPractitioner": [{"reference": "Practitioner/doc"}]} for n in range(7)),
        *({"resourceType": "Observation", "id": f"o{n}", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
           "subject": {"reference": f"Patient/p{n % 3}"},
           "performer": [{"reference": "Practitioner/doc"}],
           "effectiveDateTime": f"2024-0{1 + n % 9}-01"} for n in range(8)),
        {"resourceType": "MedicationRequest", "id": "mr", "status": "active",
         "intent": "order", "subject": {"reference": "Patient/p0"},
         "medicationReference": {"reference": "Medication/med"},
         "requester": {"reference": "Practitioner/doc"}},
        {"resourceType": "Provenance", "id": "prov", "recorded": "2024-01-01T00:00:00Z",
         "target": [{"reference": "Observation/o0"}],
         "agent": [{"who": {"reference": "Practitioner/doc"}}]},
        when=T0)
    return store


def test_paging_totals_and_self_params(hospital: Store, spec: Any) -> None:
    first = search(hospital, spec, "Patient", "gender=male&_sort=-birthdate&_count=2")
    assert ids(first.matches) == ["p5", "p3"] and first.total == 3
    assert (first.next_offset, first.previous_offset, first.last_offset) == (2, None, 2)
    assert first.self_params == (("gender", "male"), ("_sort", "-birthdate"))
    second = search(hospital, spec, "Patient", "gender=male&_sort=-birthdate&_count=2&_offset=2")
    assert ids(second.matches) == ["p1"] and second.next_offset is None
    assert second.total is None and second.previous_offset == 0  # later pages: no count
    assert search(hospital, spec, "Patient", "_count=500").count == 5  # capped
    none = search(hospital, spec, "Patient", "_total=none&_count=6")
    assert none.total is None and none.next_offset == 5
    estimate = search(hospital, spec, "Patient", "_total=estimate").total
    assert isinstance(estimate, int) and estimate > 0  # PostgreSQL: the planner's guess
    assert search(hospital, spec, "Patient", "_offset=3&_total=accurate").total == 7
    with pytest.raises(BadRequest):
        search(hospital, spec, "Patient", "_total=maybe")


def test_default_total_is_exact_up_to_a_bound(hospital: Store, spec: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``_total`` a first page counts exactly up to ``EXACT_TOTAL`` matches; beyond,
    PostgreSQL stops counting and gives its estimate (no ``last`` link), other stores count
    on; ``_total=accurate`` and ``_summary=count`` always count every match."""
    monkeypatch.setattr(search_engine, "EXACT_TOTAL", 4)
    bounded = isinstance(hospital, SqlStore) and hospital.db.dialect == "postgresql"
    small = search(hospital, spec, "Patient", "gender=female&_count=2")  # 4 matches
    assert small.total == 4 and small.last_offset == 2
    large = search(hospital, spec, "Patient", "_count=2")  # 7 matches
    if bounded:
        assert large.total is not None and large.total >= 5 and large.last_offset is None
    else:
        assert large.total == 7 and large.last_offset == 6
    exact = search(hospital, spec, "Patient", "_count=2&_total=accurate")
    assert exact.total == 7 and exact.last_offset == 6
    assert search(hospital, spec, "Patient", "_summary=count").total == 7
    if bounded:  # the bounded count itself: min(count, limit), narrowed like the search
        assert hospital.count(SearchQuery("Patient"), 4) == 4
        assert hospital.count(SearchQuery("Patient"), 100) == 7
        observations = parse_search(spec, "Observation", [("subject", "Patient/p1")],
                                    default_count=3, max_count=5).query
        assert hospital.count(observations, 2) == 2 and hospital.count(observations, 9) == 3


def test_summary_count(hospital: Store, spec: Any) -> None:
    result = search(hospital, spec, "Observation", "subject=p1&_summary=count")
    assert result.summary_count and result.total == 3 and result.matches == ()


def test_strict_and_lenient_unknown_parameters(hospital: Store, spec: Any) -> None:
    lenient = search(hospital, spec, "Patient", "gender=male&nonsense=1&_contained=true")
    assert lenient.ignored == ("nonsense", "_contained") and len(lenient.matches) == 3
    assert ("nonsense", "1") not in lenient.self_params
    with pytest.raises(BadRequest, match="nonsense"):
        search(hospital, spec, "Patient", "gender=male&nonsense=1", strict=True)


def test_include_and_revinclude(hospital: Store, spec: Any) -> None:
    result = search(hospital, spec, "Observation",
                    "_id=o0,o1,o3&_include=Observation:subject&_revinclude=Provenance:target")
    assert ids(result.matches) == ["o0", "o1", "o3"]
    assert sorted(ids(result.included)) == ["p0", "p1", "prov"]  # p0 once although cited twice
    assert ("_include", "Observation:subject") in result.self_params
    typed = search(hospital, spec, "Observation", "_id=o0&_include=Observation:performer:"
                                                  "Practitioner&_include=Observation:*")
    assert sorted(ids(typed.included)) == ["doc", "p0"]
    assert search(hospital, spec, "Patient", "_id=p0&_include=Observation:subject").included \
        == ()  # an _include only starts from resources of its source type
    with pytest.raises(BadRequest):
        search(hospital, spec, "Observation", "_include=Observation:status")


def test_include_iterate_and_limit(hospital: Store, spec: Any) -> None:
    plain = search(hospital, spec, "MedicationRequest",
                   "_include=MedicationRequest:subject&_include=Patient:organization")
    assert ids(plain.included) == ["p0"]  # without :iterate, Patient:organization has no source
    iterated = search(hospital, spec, "MedicationRequest",
                      "_include=MedicationRequest:subject"
                      "&_include:iterate=Patient:organization"
                      "&_include=MedicationRequest:medication")
    assert sorted(ids(iterated.included)) == ["med", "org", "p0"]
    capped = search(hospital, spec, "Observation", "_id=o0,o1,o2&_include=Observation:subject",
                    max_include=2)
    assert len(capped.included) == 2 and capped.included_truncated
    reverse = search(hospital, spec, "Patient", "_id=p1&_revinclude=Observation:subject"
                                                "&_revinclude:iterate=Provenance:target")
    assert ids(reverse.included) == ["o1", "o4", "o7"]
    reverse0 = search(hospital, spec, "Patient", "_id=p0&_revinclude=Observation:subject"
                                                 "&_revinclude:iterate=Provenance:target")
    assert sorted(ids(reverse0.included)) == ["o0", "o3", "o6", "prov"]


def test_chained_and_reverse_chained_through_the_engine(hospital: Store, spec: Any) -> None:
    result = search(hospital, spec, "Observation", "subject:Patient.gender=male&_sort=date")
    assert ids(result.matches) == ["o1", "o4", "o7"]
    has = search(hospital, spec, "Patient", "_has:MedicationRequest:subject:status=active")
    assert ids(has.matches) == ["p0"]


def test_compartment_search(hospital: Store, spec: Any) -> None:
    result = compartment_search(hospital, spec, "Patient", "p1", "Observation",
                                [("_sort", "-date")], default_count=10)
    assert ids(result.matches) == ["o7", "o4", "o1"] and result.total == 3
    narrowed = compartment_search(hospital, spec, "Patient", "p1", "Observation",
                                  [("date", "lt2024-06")])
    assert ids(narrowed.matches) == ["o1", "o4"]
    every = compartment_search(hospital, spec, "Patient", "p0", "*", [], default_count=20)
    assert sorted(ids(every.matches)) == ["mr", "o0", "o3", "o6"]
    by_doc = compartment_search(hospital, spec, "Practitioner", "doc", "Patient", [])
    assert by_doc.total == 7
    with pytest.raises(BadRequest):
        compartment_search(hospital, spec, "Patient", "p1", "Organization", [])
    with pytest.raises(BadRequest):
        compartment_search(hospital, spec, "Nonsense", "p1", "Observation", [])


def test_everything(hospital: Store, spec: Any) -> None:
    result = everything(hospital, spec, "p0")
    assert sorted(ids(result.matches)) == ["doc", "med", "mr", "o0", "o3", "o6", "org", "p0"]
    assert result.total == 8
    paged = everything(hospital, spec, "p0", count=3, offset=3)
    assert ids(paged.matches) == ids(result.matches)[3:6] and paged.next_offset == 6
    typed = everything(hospital, spec, "p0", types=["Observation", "Medication"])
    assert sorted(ids(typed.matches)) == ["med", "o0", "o3", "o6"]
    put(hospital, {"resourceType": "Observation", "id": "o3", "status": "amended",
                   "code": {"text": "x"}, "subject": {"reference": "Patient/p0"}},
        when=T0 + timedelta(days=1))
    since = everything(hospital, spec, "p0", since=T0 + timedelta(hours=1))
    assert ids(since.matches) == ["o3"]
    with pytest.raises(NotFound):
        everything(hospital, spec, "nobody")
    hospital.write([Change("Patient", "p6", 2, 1, T0, True, b"", None)])
    with pytest.raises(Gone):
        everything(hospital, spec, "p6")
