"""Batch and transaction Bundles (R4 §3.1.0.11): order, references, atomicity, responses."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import pytest

from medarchive.errors import AlreadyApplied, FhirError, VersionConflict
from medarchive.fhir.search.query import SearchQuery
from medarchive.service.repository import Repository
from medarchive.service.request import FhirResponse
from medarchive.service.router import Limits, Router
from medarchive.store.base import Change, Store, Version


def parsed(response: FhirResponse) -> Any:
    return orjson.loads(response.content())


def tx(*entries: dict[str, Any], kind: str = "transaction") -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def post(full_url: str, resource: dict[str, Any], **request: str) -> dict[str, Any]:
    return {"fullUrl": full_url, "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"], **request}}


def put(resource: dict[str, Any], url: str | None = None, **request: str) -> dict[str, Any]:
    return {"resource": resource, "request": {
        "method": "PUT", "url": url or f"{resource['resourceType']}/{resource['id']}", **request}}


def get(url: str) -> dict[str, Any]:
    return {"request": {"method": "GET", "url": url}}


def delete(url: str, **request: str) -> dict[str, Any]:
    return {"request": {"method": "DELETE", "url": url, **request}}


PATIENT = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "1"}]}


def observation(subject: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "hr"},
            "subject": {"reference": subject}, **fields}


def test_transaction_resolves_placeholders_everywhere(call: Any, router: Router) -> None:
    response = call("POST", "", tx(
        post("urn:uuid:obs", observation(
            "urn:uuid:pat",
            extension=[{"url": "urn:x", "valueReference": {"reference": "urn:uuid:pat"}}],
            contained=[{"resourceType": "Provenance", "target": [{"reference": "urn:uuid:pat"}],
                        "recorded": "2024-01-01T00:00:00Z", "agent": []}],
            text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">'
                  '<a href="urn:uuid:pat">p</a></div>'})),
        post("urn:uuid:pat", dict(PATIENT)),
        post("urn:oid:1.2.3", {"resourceType": "Organization", "name": "H"}),
        put({"resourceType": "Patient", "id": "fixed",
             "managingOrganization": {"reference": "urn:oid:1.2.3"}})))
    assert response.status == 200
    bundle = parsed(response)
    assert bundle["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in bundle["entry"]]
    assert statuses == ["201 Created", "201 Created", "201 Created", "201 Created"]
    obs_location = bundle["entry"][0]["response"]["location"]
    pat_location = bundle["entry"][1]["response"]["location"]
    pat_ref = pat_location.split("/_history")[0]
    obs = parsed(call("GET", obs_location.split("/_history")[0]))
    assert obs["subject"]["reference"] == pat_ref
    assert obs["extension"][0]["valueReference"]["reference"] == pat_ref
    assert obs["contained"][0]["target"][0]["reference"] == pat_ref
    assert f'href="{pat_ref}"' in obs["text"]["div"]
    fixed = parsed(call("GET", "Patient/fixed"))
    assert fixed["managingOrganization"]["reference"].startswith("Organization/")
    entry = bundle["entry"][0]["response"]
    assert entry["etag"] == 'W/"1"' and entry["lastModified"].endswith("Z")
    assert "resource" not in bundle["entry"][0]


def test_transaction_is_atomic(call: Any, store: Store) -> None:
    call("PUT", "Patient/keep", {"resourceType": "Patient", "id": "keep"})
    before = store.last_seq()
    response = call("POST", "", tx(
        post("urn:uuid:a", dict(PATIENT)),
        delete("Patient/keep"),
        post("urn:uuid:b", {"resourceType": "Observation", "subject": {
            "reference": "urn:uuid:a"}})))  # invalid: no status, no code
    assert response.status == 422
    issues = parsed(response)["issue"]
    assert all(i["diagnostics"].startswith("Bundle.entry[2]") for i in issues)
    assert all(i["expression"][0] == "Bundle.entry[2]" for i in issues)
    assert store.last_seq() == before
    assert call("GET", "Patient/keep").status == 200


@pytest.mark.parametrize(("entries", "status", "where"), [
    ([post("urn:uuid:a", observation("urn:uuid:missing"))], 400, 0),
    ([post("urn:uuid:a", observation("Patient?identifier=urn:mrn|none"))], 412, 0),
    ([put({"resourceType": "Patient", "id": "x"}), put({"resourceType": "Patient", "id": "x"})],
     400, 1),
    ([get("Patient/x"), {"request": {"method": "TRACE", "url": "Patient"}}], 400, 1),
    ([{"resource": PATIENT}], 400, 0),
    ([put({"resourceType": "Patient", "id": "y"}, url="Patient/x")], 400, 0),
    ([delete("Nope/1")], 404, 0),
    ([post("urn:uuid:a", {"resourceType": "Patient"}, url="Patient/1")], 400, 0),
    ([delete("Patient")], 400, 0),
    ([put({"resourceType": "Patient", "id": "a"}, ifMatch='W/"3"')], 412, 0),
    ([{"request": {"method": "POST", "url": ""}, "resource": tx()}], 400, 0),
    ([get("http://elsewhere.example/fhir/Patient/1")], 400, 0),
])
def test_transaction_failures_name_the_entry(memory_call: Any, entries: list[Any],
                                             status: int, where: int) -> None:
    response = memory_call("POST", "", tx(*entries))
    assert response.status == status
    assert parsed(response)["issue"][0]["diagnostics"].startswith(f"Bundle.entry[{where}]")
    assert parsed(memory_call("GET", "_history"))["total"] == 0


def test_conditional_references_and_interactions(call: Any) -> None:
    call("POST", "Patient", dict(PATIENT))
    call("PUT", "Patient/gone", {"resourceType": "Patient", "id": "gone",
                                 "identifier": [{"system": "urn:mrn", "value": "9"}]})
    response = call("POST", "", tx(
        post("urn:uuid:p", dict(PATIENT), ifNoneExist="identifier=urn:mrn|1"),
        post("urn:uuid:o", observation("urn:uuid:p")),
        post("urn:uuid:o2", observation("Patient?identifier=urn:mrn|1")),
        put({"resourceType": "Patient", "active": True,
             "identifier": [{"system": "urn:mrn", "value": "2"}]},
            url="Patient?identifier=urn:mrn|2"),
        delete("Patient?identifier=urn:mrn|9"),
        delete("Patient?identifier=urn:mrn|404")))
    assert response.status == 200, response.content()
    entries = parsed(response)["entry"]
    assert [e["response"]["status"] for e in entries] == [
        "200 OK", "201 Created", "201 Created", "201 Created", "200 OK", "204 No Content"]
    assert entries[0]["response"]["location"] == "Patient/id-1/_history/1"
    for number in (1, 2):
        obs = parsed(call("GET", entries[number]["response"]["location"].split("/_history")[0]))
        assert obs["subject"]["reference"] == "Patient/id-1"
    assert call("GET", "Patient/gone").status == 410
    found = parsed(call("GET", "Patient", query=[("identifier", "urn:mrn|2")]))
    assert found["total"] == 1


def test_processing_order_and_get_entries(call: Any) -> None:
    call("PUT", "Patient/old", {"resourceType": "Patient", "id": "old"})
    response = call("POST", "", tx(
        get("Patient/new"),
        put({"resourceType": "Patient", "id": "new", "gender": "female"}),
        delete("Patient/old"),
        get("Patient?_id=old")), prefer="return=representation")
    entries = parsed(response)["entry"]
    assert entries[0]["response"]["status"] == "200 OK"
    assert entries[0]["resource"]["gender"] == "female"  # GETs run after the writes
    assert entries[1]["resource"]["meta"]["versionId"] == "1"
    assert entries[2]["response"]["status"] == "200 OK"
    assert entries[3]["resource"]["total"] == 0


def test_prefer_operation_outcome_in_batches(memory_call: Any) -> None:
    response = memory_call("POST", "", tx(put({"resourceType": "Patient", "id": "a"}),
                                          kind="batch"), prefer="return=OperationOutcome")
    entry = parsed(response)["entry"][0]
    assert "resource" not in entry
    assert entry["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert entry["response"]["status"] == "201 Created"


def test_patch_entry_and_if_match(call: Any) -> None:
    call("PUT", "Patient/a", {"resourceType": "Patient", "id": "a", "active": True})
    ops = [{"op": "replace", "path": "/active", "value": False}]
    binary = {"resourceType": "Binary", "contentType": "application/json-patch+json",
              "data": base64.b64encode(orjson.dumps(ops)).decode()}
    response = call("POST", "", tx({"resource": binary, "request": {
        "method": "PATCH", "url": "Patient/a", "ifMatch": 'W/"1"'}}))
    assert parsed(response)["entry"][0]["response"]["etag"] == 'W/"2"'
    assert parsed(call("GET", "Patient/a"))["active"] is False
    stale = call("POST", "", tx({"resource": binary, "request": {
        "method": "PATCH", "url": "Patient/a", "ifMatch": 'W/"1"'}}))
    assert stale.status == 412


def test_entry_limit(memory_call: Any) -> None:
    call = memory_call
    many = [post(f"urn:uuid:{n}", dict(PATIENT)) for n in range(51)]
    assert call("POST", "", tx(*many)).status == 413
    assert call("POST", "", tx(*many, kind="batch")).status == 413


@pytest.mark.parametrize("body", [
    {"resourceType": "Patient"}, {"resourceType": "Bundle", "type": "collection"},
    {"resourceType": "Bundle", "type": "transaction", "entry": {}}, [1]])
def test_only_batch_and_transaction_bundles_are_processed(memory_call: Any, body: Any) -> None:
    call = memory_call
    assert call("POST", "", body).status == 400


def test_batch_entries_are_independent(call: Any, store: Store) -> None:
    call("PUT", "Patient/a", {"resourceType": "Patient", "id": "a"})
    response = call("POST", "", tx(
        get("Patient/a"),
        post("urn:uuid:x", {"resourceType": "Observation"}),  # invalid
        post("urn:uuid:y", dict(PATIENT)),
        put({"resourceType": "Patient", "id": "a", "active": True}, ifMatch='W/"9"'),
        get("Patient/missing"),
        delete("Patient/a"),
        get("Patient?identifier=urn:mrn|1"),
        kind="batch"))
    assert response.status == 200
    entries = parsed(response)["entry"]
    assert parsed(response)["type"] == "batch-response"
    statuses = [e["response"]["status"] for e in entries]
    assert statuses == ["410 Gone", "422 Unprocessable Entity", "201 Created",
                        "412 Precondition Failed", "404 Not Found", "200 OK", "200 OK"]
    assert entries[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert entries[6]["resource"]["total"] == 1  # the POST ran before this GET
    assert "resource" not in entries[2]


def test_batch_resolves_conditional_references(call: Any) -> None:
    call("POST", "Patient", dict(PATIENT))
    response = call("POST", "", tx(
        post("urn:uuid:o", observation("Patient?identifier=urn:mrn|1")),
        post("urn:uuid:o2", observation("Patient?identifier=urn:mrn|nobody")),
        kind="batch"), prefer="return=representation")
    entries = parsed(response)["entry"]
    assert entries[0]["resource"]["subject"]["reference"] == "Patient/id-1"
    assert entries[1]["response"]["status"] == "412 Precondition Failed"


def test_idempotency_keys(router: Router, store: Store) -> None:
    bundle = tx(post("urn:uuid:a", dict(PATIENT)))
    router.bundles.process(bundle, idempotency_key="k1")
    with pytest.raises(AlreadyApplied):
        router.bundles.process(bundle, idempotency_key="k1")
    router.bundles.process(tx(kind="batch"), idempotency_key="k2")
    with pytest.raises(AlreadyApplied):
        router.bundles.process(tx(kind="batch"), idempotency_key="k2")
    assert store.count(SearchQuery("Patient")) == 1


class ConflictingOnce:
    """A store whose first write loses a race."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def write(self, changes: Sequence[Change], *, idempotency_key: str | None = None
              ) -> list[Version]:
        if not self.failed:
            self.failed = True
            raise VersionConflict(changes[0].resource_type, changes[0].id, 0, 1)
        return self.inner.write(changes, idempotency_key=idempotency_key)


def test_transactions_retry_lost_races(store: Store,
                                       build_repository: Callable[..., Repository]) -> None:
    def router_on(flaky: Store) -> Router:
        return Router(build_repository(flaky), base="http://test/fhir",
                      limits=Limits(10_000, 10, 20, 5, 10))
    result = router_on(ConflictingOnce(store)).bundles.process(
        tx(put({"resourceType": "Patient", "id": "a"})))
    assert result["entry"][0]["response"]["status"] == "201 Created"
    assert store.read("Patient", "a") is not None
    with pytest.raises(FhirError) as caught:  # a client that named the version gets 412
        router_on(ConflictingOnce(store)).bundles.process(
            tx(put({"resourceType": "Patient", "id": "a"}, ifMatch='W/"1"')))
    assert caught.value.status == 412
    assert caught.value.issues[0].diagnostics.startswith("Bundle.entry[0]")
    assert store.read("Patient", "a").version_id == 1  # type: ignore[union-attr]


class CountingReads:
    """A store that counts ``read`` calls and can change a resource right after a search (as
    another writer could between a conditional update's search and its write)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.reads = 0
        self.after_search: Callable[[], None] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def read(self, resource_type: str, id: str) -> Version | None:
        self.reads += 1
        return self.inner.read(resource_type, id)

    def search(self, query: SearchQuery) -> list[Version]:
        found = self.inner.search(query)
        if self.after_search is not None:
            interfere, self.after_search = self.after_search, None
            interfere()
        return found


def test_conditional_updates_reuse_their_search(store: Store,
                                                build_repository: Callable[..., Repository]
                                                ) -> None:
    counting = CountingReads(store)
    router = Router(build_repository(counting), base="http://test/fhir",
                    limits=Limits(10_000, 10, 20, 5, 10))
    patient = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "7"}]}
    url = "Patient?identifier=urn:mrn|7"
    created = router.bundles.process(tx(put(patient, url)))
    assert created["entry"][0]["response"]["status"] == "201 Created"
    updated = router.bundles.process(tx(put({**patient, "gender": "male"}, url)))
    assert updated["entry"][0]["response"]["status"] == "200 OK"
    assert counting.reads == 0  # the search found (or did not find) the current version
    [hit] = store.search(SearchQuery("Patient"))
    assert (hit.version_id, orjson.loads(hit.body)["gender"]) == (2, "male")

    # another writer changes the Patient between the search and the write: the version check
    # fails, the transaction is planned again and applies on top of that change
    other = build_repository(store)
    counting.after_search = lambda: other.commit([other.change_for_write(
        {**patient, "gender": "other"}, hit.id, store.read("Patient", hit.id))])
    again = router.bundles.process(tx(put({**patient, "gender": "female"}, url)))
    assert again["entry"][0]["response"]["status"] == "200 OK"
    final = store.read("Patient", hit.id)
    assert final is not None
    assert (final.version_id, orjson.loads(final.body)["gender"]) == (4, "female")
