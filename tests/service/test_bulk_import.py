"""The NDJSON fast path: validated, indexed (searchable), versioned, bad lines reported; the
same through the process pool; and ``$import`` over the router."""

from __future__ import annotations

from typing import Any

import orjson

from medarchive.fhir.search.parse import parse_search
from medarchive.service.bulk.imports import BulkImport
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
