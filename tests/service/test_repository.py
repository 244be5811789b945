"""CRUD and versioning semantics (R4 §3.1.0.2-3.1.0.8) on every store backend."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from medarchive.errors import (
    BadRequest,
    Conflict,
    Gone,
    NotFound,
    PreconditionFailed,
    Unprocessable,
    VersionConflict,
)
from medarchive.service.repository import Repository, check_id
from medarchive.store.base import Change, Store, Version


def patient(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", **fields}


def test_create_assigns_id_version_and_meta(repository: Repository) -> None:
    written = repository.create(patient(id="client", meta={
        "versionId": "99", "lastUpdated": "1999-01-01T00:00:00Z",
        "tag": [{"system": "urn:t", "code": "x"}], "profile": ["http://p"]}), "Patient")
    assert written.status == 201
    stored = repository.read("Patient", "id-1").resource()
    assert stored["id"] == "id-1"
    assert stored["meta"] == {"versionId": "1", "lastUpdated": "2024-01-01T00:00:00.000000Z",
                              "tag": [{"system": "urn:t", "code": "x"}],
                              "profile": ["http://p"]}
    assert list(stored)[:3] == ["resourceType", "id", "meta"]
    assert repository.current("Patient", "client") is None


@pytest.mark.parametrize(("body", "rtype"), [
    ([], "Patient"), ({"id": "x"}, "Patient"), (patient(), "Observation"),
    ({"resourceType": "Nope"}, "Patient"), (patient(meta=[]), "Patient"),
    (patient(id="bad id!"), "Patient")])
def test_create_rejects_what_is_not_a_resource_of_the_type(
        repository: Repository, body: Any, rtype: str) -> None:
    with pytest.raises(BadRequest):
        repository.create(body, rtype)


def test_read_unknown_and_deleted(repository: Repository) -> None:
    with pytest.raises(NotFound):
        repository.read("Patient", "nope")
    repository.update(patient(id="a"), "Patient", "a")
    assert repository.delete("Patient", "a").status == 200
    with pytest.raises(Gone):
        repository.read("Patient", "a")
    with pytest.raises(Gone):
        repository.vread("Patient", "a", 2)
    assert repository.vread("Patient", "a", 1).version_id == 1
    with pytest.raises(NotFound):
        repository.vread("Patient", "a", 3)


def test_update_as_create_then_update(repository: Repository) -> None:
    first = repository.update(patient(id="a", gender="male"), "Patient", "a")
    assert first.status == 201 and first.version is not None
    second = repository.update(patient(id="a", gender="female"), "Patient", "a")
    assert second.status == 200 and second.version is not None
    assert second.version.version_id == 2
    assert repository.read("Patient", "a").resource()["gender"] == "female"
    assert repository.vread("Patient", "a", 1).resource()["gender"] == "male"


@pytest.mark.parametrize("body", [patient(), patient(id="b")])
def test_update_needs_the_url_id_in_the_body(repository: Repository, body: Any) -> None:
    with pytest.raises(BadRequest):
        repository.update(body, "Patient", "a")


def test_ids_are_checked() -> None:
    assert check_id("A-z.09") == "A-z.09"
    for bad in ("", "a" * 65, "a/b", "a b", "é"):
        with pytest.raises(BadRequest):
            check_id(bad)


def test_if_match(repository: Repository) -> None:
    repository.update(patient(id="a"), "Patient", "a")
    assert repository.update(patient(id="a", active=True), "Patient", "a", if_match=1).status \
        == 200
    with pytest.raises(PreconditionFailed):
        repository.update(patient(id="a"), "Patient", "a", if_match=1)
    with pytest.raises(PreconditionFailed):
        repository.update(patient(id="new"), "Patient", "new", if_match=1)
    with pytest.raises(PreconditionFailed):
        repository.delete("Patient", "a", if_match=1)
    with pytest.raises(PreconditionFailed):
        repository.patch([], "Patient", "a", if_match=5)
    assert repository.delete("Patient", "a", if_match=2).status == 200


def test_patch(repository: Repository) -> None:
    repository.update(patient(id="a", active=True), "Patient", "a")
    written = repository.patch([{"op": "replace", "path": "/active", "value": False}],
                               "Patient", "a")
    assert written.status == 200
    current = repository.read("Patient", "a")
    assert current.version_id == 2 and current.resource()["active"] is False
    with pytest.raises(BadRequest):
        repository.patch([{"op": "replace", "path": "/id", "value": "b"}], "Patient", "a")
    with pytest.raises(BadRequest):
        repository.patch([{"op": "replace", "path": "/resourceType", "value": "Group"}],
                         "Patient", "a")
    with pytest.raises(NotFound):
        repository.patch([], "Patient", "missing")


def test_delete_semantics(repository: Repository, store: Store) -> None:
    assert repository.delete("Patient", "never").status == 204
    repository.update(patient(id="a"), "Patient", "a")
    deleted = repository.delete("Patient", "a")
    assert deleted.status == 200 and deleted.version is not None and deleted.version.deleted
    assert repository.delete("Patient", "a").status == 204
    assert store.read("Patient", "a").version_id == 2  # type: ignore[union-attr]
    again = repository.update(patient(id="a"), "Patient", "a")
    assert again.status == 201 and again.version.version_id == 3  # type: ignore[union-attr]


def test_conditional_create(repository: Repository) -> None:
    body = patient(identifier=[{"system": "urn:mrn", "value": "1"}])
    criteria = [("identifier", "urn:mrn|1")]
    assert repository.create(body, "Patient", if_none_exist=criteria).status == 201
    matched = repository.create(body, "Patient", if_none_exist=criteria)
    assert matched.status == 200 and matched.version.id == "id-1"  # type: ignore[union-attr]
    repository.create(body, "Patient")
    with pytest.raises(PreconditionFailed):
        repository.create(body, "Patient", if_none_exist=criteria)
    with pytest.raises(BadRequest):
        repository.create(body, "Patient", if_none_exist=[("nonsense", "1")])
    with pytest.raises(BadRequest):
        repository.create(body, "Patient", if_none_exist=[])


def test_conditional_update(repository: Repository) -> None:
    criteria = [("identifier", "urn:mrn|1")]
    body = patient(identifier=[{"system": "urn:mrn", "value": "1"}])
    created = repository.conditional_update(body, "Patient", criteria)
    assert created.status == 201 and created.version.id == "id-1"  # type: ignore[union-attr]
    updated = repository.conditional_update({**body, "active": True}, "Patient", criteria)
    assert updated.status == 200 and updated.version.version_id == 2  # type: ignore[union-attr]
    with pytest.raises(BadRequest):
        repository.conditional_update({**body, "id": "other"}, "Patient", criteria)
    at_id = repository.conditional_update(
        patient(id="chosen", identifier=[{"system": "urn:mrn", "value": "2"}]), "Patient",
        [("identifier", "urn:mrn|2")])
    assert at_id.status == 201 and at_id.version.id == "chosen"  # type: ignore[union-attr]
    repository.create(body, "Patient")
    with pytest.raises(PreconditionFailed):
        repository.conditional_update(body, "Patient", criteria)


def test_conditional_delete_and_patch(repository: Repository) -> None:
    body = patient(identifier=[{"system": "urn:mrn", "value": "1"}], active=True)
    criteria = [("identifier", "urn:mrn|1")]
    assert repository.conditional_delete("Patient", criteria).status == 204
    with pytest.raises(NotFound):
        repository.conditional_patch([], "Patient", criteria)
    repository.create(body, "Patient")
    patched = repository.conditional_patch(
        [{"op": "replace", "path": "/active", "value": False}], "Patient", criteria)
    assert patched.status == 200
    assert repository.conditional_delete("Patient", criteria).status == 200
    repository.create(body, "Patient")
    repository.create(body, "Patient")
    with pytest.raises(PreconditionFailed):
        repository.conditional_delete("Patient", criteria)
    with pytest.raises(PreconditionFailed):
        repository.conditional_patch([], "Patient", criteria)


def test_validation_collects_all_issues(repository: Repository) -> None:
    with pytest.raises(Unprocessable) as caught:
        repository.create({"resourceType": "Observation"}, "Observation")
    assert caught.value.status == 422
    assert {i.expression for i in caught.value.issues} == {
        ("Observation.status",), ("Observation.code",)}
    assert repository.store.last_seq() == 0


def test_writes_are_not_validated_when_switched_off(
        store: Store, build_repository: Callable[..., Repository]) -> None:
    repository = build_repository(store, validate_writes=False)
    assert repository.create({"resourceType": "Observation"}, "Observation").status == 201
    assert repository.validate({"resourceType": "Observation"})


def test_concurrent_updates_lose_nothing(repository: Repository) -> None:
    writers = 8
    repository.update(patient(id="a"), "Patient", "a")
    errors: list[BaseException] = []
    barrier = threading.Barrier(writers)

    def write(number: int) -> None:
        barrier.wait()
        try:
            repository.update(patient(id="a", name=[{"family": f"W{number}"}]), "Patient", "a")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert repository.read("Patient", "a").version_id == writers + 1
    families = {repository.vread("Patient", "a", v).resource()["name"][0]["family"]
                for v in range(2, writers + 2)}
    assert families == {f"W{n}" for n in range(writers)}


def test_concurrent_stale_if_match_lets_exactly_one_win(repository: Repository) -> None:
    writers = 6
    repository.update(patient(id="a"), "Patient", "a")
    outcomes: list[str] = []
    barrier = threading.Barrier(writers)

    def write(number: int) -> None:
        barrier.wait()
        try:
            repository.update(patient(id="a", gender="male"), "Patient", "a", if_match=1)
            outcomes.append("ok")
        except PreconditionFailed:
            outcomes.append("412")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["412"] * (writers - 1) + ["ok"]
    assert repository.read("Patient", "a").version_id == 2


class AlwaysConflicting:
    """A store whose writes always lose the race."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def write(self, changes: Sequence[Change], *, idempotency_key: str | None = None
              ) -> list[Version]:
        raise VersionConflict(changes[0].resource_type, changes[0].id,
                              changes[0].expected_version, 7)


def test_a_conflict_that_persists_is_409(
        store: Store, build_repository: Callable[..., Repository]) -> None:
    repository = build_repository(AlwaysConflicting(store), retries=3)
    with pytest.raises(Conflict) as caught:
        repository.update(patient(id="a"), "Patient", "a")
    assert caught.value.status == 409
    with pytest.raises(PreconditionFailed):
        repository.update(patient(id="a"), "Patient", "a", if_match=0)
