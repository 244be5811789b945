"""The NDJSON fast path: validated, indexed (searchable), versioned, bad lines reported; the
same through the process pool; and ``$import`` over the router."""

from __future__ import annotations

from typing import Any

import orjson

from medarchive.fhir.search.parse import parse_search
from medarchive.service.bulk.imports import BulkImport, Source, resolve_urns
from medarchive.service.request import FhirRequest

LINES = [
    orjson.dumps({"resourceType": "Patient", "id": "p1", "gender": "female"}),
    orjson.dumps({"resourceType": "Patient", "id": "p2", "gender": "nonsense"}),
    b"{not json",
    b"",
    orjson.dumps({"resourceType": "Observation", "id": "o1", "status": "final",
                  "code": {"text": "hr"}, "subject": {"reference": "Patient/p1"}}),
    orjson.dumps({"resourceType": "Observation", "status": "final", "code": {"text": "x"}}),
    orjson.dumps({"resourceType": "NotAType", "id": "x"}),
]


def search(repository: Any, rtype: str, params: list[tuple[str, str]]) -> list[str]:
    query = parse_search(repository.spec, rtype, params).query
    return sorted(v.id for v in repository.search(query))


def check_loaded(repository: Any, report: Any) -> None:
    assert report.stored == 3
    assert [e.split(":")[0] for e in report.errors] == ["line 2", "line 3", "line 7"]
    assert search(repository, "Observation", [("subject", "Patient/p1")]) == ["o1"]
    assert search(repository, "Patient", [("gender", "female")]) == ["p1"]
    assert repository.read("Patient", "p1").version_id == 1


def test_load_in_process(repository: Any) -> None:
    importer = BulkImport(repository, chunk=2)
    check_loaded(repository, importer.load(LINES, "test"))
    again = importer.load([orjson.dumps({"resourceType": "Patient", "id": "p1",
                                         "gender": "male"})], "again")
    assert again.stored == 1 and repository.read("Patient", "p1").version_id == 2
    repository.delete("Patient", "p1")
    importer.load([LINES[0]], "after delete")
    assert repository.read("Patient", "p1").version_id == 4


def test_load_through_process_pool(repository: Any) -> None:
    report = BulkImport(repository, chunk=3, processes=1).load(LINES, "pool")
    check_loaded(repository, report)


def test_import_operation(repository: Any, router: Any) -> None:
    router.operations["$import"] = BulkImport(repository).operation
    body = b"\n".join([LINES[0], LINES[4]])
    response = router.handle(FhirRequest("POST", "$import", (),
                                         {"content-type": "application/fhir+ndjson"}, body))
    assert response.status == 200, response.resource
    assert "stored 2" in response.resource["issue"][0]["diagnostics"]
    partial = router.handle(FhirRequest("POST", "$import", (),
                                        {"content-type": "application/fhir+ndjson"},
                                        b"\n".join([LINES[0], LINES[1]])))
    assert partial.status == 207
    wrong = router.handle(FhirRequest("POST", "$import", (),
                                      {"content-type": "application/fhir+json"}, body))
    assert wrong.status == 400


def test_a_keyed_source_resumes_after_its_committed_chunks(repository: Any) -> None:
    lines = [orjson.dumps({"resourceType": "Patient", "id": f"p{n}"}) for n in range(5)]
    asked = iter([True, False])  # the first run stops (crashes) after its first chunk
    first = BulkImport(repository, chunk=2, proceed=lambda: next(asked)).load_many(
        [Source("f", lambda: lines, "k")])[0]
    assert (first.stored, first.skipped) == (2, 0)
    again = BulkImport(repository, chunk=2).load_many([Source("f", lambda: lines, "k")])[0]
    assert (again.stored, again.skipped) == (3, 2)
    assert [repository.read("Patient", f"p{n}").version_id for n in range(5)] == [1] * 5
    assert BulkImport(repository, chunk=2).load_many(
        [Source("f", lambda: lines, "k")])[0].skipped == 5
    unkeyed = BulkImport(repository, chunk=2).load(lines[:1], "no key")
    assert unkeyed.stored == 1 and repository.read("Patient", "p0").version_id == 2


def test_urn_references_resolve_across_sources(repository: Any) -> None:
    pid = "0b6c9f4e-1111-4222-8333-444455556666"
    patients = [orjson.dumps({"resourceType": "Patient", "id": pid})]
    observations = [orjson.dumps({"resourceType": "Observation", "id": f"o{n}",
                                  "status": "final", "code": {"text": "hr"},
                                  "subject": {"reference": f"urn:uuid:{ref}"}})
                    for n, ref in enumerate([pid, "99999999-0000-4000-8000-000000000000"])]
    reports = BulkImport(repository).load_many([
        Source("obs", lambda: observations, type="Observation"),
        Source("pat", lambda: patients, type="Patient")])
    assert reports[0].stored == 1 and reports[1].stored == 1
    assert reports[0].errors[0].startswith("line 2: reference urn:uuid:9999")
    assert repository.read("Observation", "o0").resource()["subject"] == {
        "reference": f"Patient/{pid}"}
    assert search(repository, "Observation", [("subject", f"Patient/{pid}")]) == ["o0"]


def test_resolve_urns_walks_every_reference() -> None:
    resource = {"a": [{"reference": "urn:uuid:x"}, {"b": {"reference": "Patient/y"}}],
                "reference": "urn:uuid:z"}
    assert resolve_urns(resource, {"x": "Patient", "z": "Group"}) is None
    assert resource == {"a": [{"reference": "Patient/x"}, {"b": {"reference": "Patient/y"}}],
                        "reference": "Group/z"}
    assert resolve_urns({"reference": "urn:uuid:q"}, {}) == "urn:uuid:q"


def test_a_typed_source_refuses_other_types(repository: Any) -> None:
    report = BulkImport(repository).load_many([Source("p", lambda: LINES[:1] + LINES[4:5],
                                                      type="Patient")])[0]
    assert report.stored == 1
    assert report.errors == ["line 2: a Observation in an input of type Patient"]


def test_cancelled_load_stops_between_chunks(repository: Any) -> None:
    lines = [orjson.dumps({"resourceType": "Patient", "id": f"p{n}"}) for n in range(6)]
    asked = iter([True, False])
    report = BulkImport(repository, chunk=2, proceed=lambda: next(asked)).load(lines, "c")
    assert report.stored == 2 and repository.store.read("Patient", "p2") is None
