"""``Store.reindex``: re-extracting the index of every current resource, in batches, resumable,
and safe against writes that happen meanwhile; on every backend."""

from __future__ import annotations

from typing import Any

import pytest
from search_helpers import delete, find, indexer, patient, put

from medarchive.fhir.search.entries import IndexEntries
from medarchive.store.base import ReindexProgress, Store


class Switchable:
    """An indexer that indexes nothing until ``full`` is set (a parameter "added" later)."""

    def __init__(self) -> None:
        self.full = False
        self.calls = 0
        self.on_index: Any = None

    def __call__(self, resource: dict[str, Any]) -> IndexEntries:
        self.calls += 1
        if self.on_index is not None:
            self.on_index(resource)
        return indexer()(resource) if self.full else IndexEntries()


class Stop(Exception):
    pass


@pytest.fixture
def switchable() -> Switchable:
    return Switchable()


@pytest.fixture
def store(store_factory: Any, switchable: Switchable) -> Store:
    s = store_factory(switchable)
    put(s, *(patient(f"p{n}", name=[{"family": f"Name{n}"}]) for n in range(7)))
    delete(s, "Patient", "p6")
    return s


def test_reindex_makes_new_parameters_searchable(store: Store, switchable: Switchable) -> None:
    assert find(store, "Patient", "name=name1") == []
    switchable.full = True
    seen: list[ReindexProgress] = []
    final = store.reindex(batch=4, progress=seen.append)
    assert final.finished and final.done == 6 and final.total == 6
    assert [(p.done, p.total) for p in seen] == [(4, 6), (6, 6)]
    assert find(store, "Patient", "name=name1") == ["p1"]
    assert find(store, "Patient", "name=name6") == []  # deleted resources stay out
    assert store.reindex().finished  # a finished job is not run again
    assert store.reindex(restart=True).done == 6


def test_interrupted_reindex_resumes_after_last_batch(store: Store,
                                                     switchable: Switchable) -> None:
    switchable.full = True

    def stop_after_first(progress: ReindexProgress) -> None:
        raise Stop(progress)

    with pytest.raises(Stop):
        store.reindex(job="add-name", batch=2, progress=stop_after_first)
    assert find(store, "Patient", "name=name") == ["p0", "p1"]  # the committed batch
    before = switchable.calls
    final = store.reindex(job="add-name", batch=2)
    assert final.finished and final.done == 6
    assert switchable.calls - before == 4  # only the rest was re-extracted
    assert find(store, "Patient", "name=name") == [f"p{n}" for n in range(6)]


def test_write_during_reindex_wins(store: Store, switchable: Switchable) -> None:
    switchable.full = True

    def update_while_indexing(resource: dict[str, Any]) -> None:
        if resource.get("id") == "p3" and resource["name"][0]["family"] == "Name3":
            switchable.on_index = None
            put(store, patient("p3", name=[{"family": "Renamed"}]))

    switchable.on_index = update_while_indexing
    store.reindex(batch=10)
    assert find(store, "Patient", "name=renamed") == ["p3"]
    assert find(store, "Patient", "name=name3") == []


def test_reindex_of_one_type_leaves_the_others(store: Store, switchable: Switchable) -> None:
    put(store, {"resourceType": "Practitioner", "id": "d1", "name": [{"family": "Name9"}]})
    switchable.full = True
    seen: list[ReindexProgress] = []
    final = store.reindex(batch=4, progress=seen.append, resource_type="Practitioner")
    assert final.finished and final.done == 1 and final.total == 1
    assert final.job == "reindex:Practitioner"
    assert find(store, "Practitioner", "name=name9") == ["d1"]
    assert find(store, "Patient", "name=name1") == []  # Patients were not re-extracted
    again = store.reindex(resource_type="Patient", batch=4)  # its own job, not finished
    assert again.done == 6 and find(store, "Patient", "name=name1") == ["p1"]
    assert store.reindex(resource_type="Practitioner").finished  # finished, kept apart


def test_interrupted_reindex_of_one_type_resumes(store: Store, switchable: Switchable) -> None:
    put(store, *({"resourceType": "Practitioner", "id": f"d{n}", "name": [{"family": "Doc"}]}
                 for n in range(5)))
    switchable.full = True

    def stop_after_first(progress: ReindexProgress) -> None:
        raise Stop(progress)

    with pytest.raises(Stop):
        store.reindex(job="doc", batch=2, progress=stop_after_first,
                      resource_type="Practitioner")
    assert find(store, "Practitioner", "name=doc") == ["d0", "d1"]
    before = switchable.calls
    final = store.reindex(job="doc", batch=2, resource_type="Practitioner")
    assert final.finished and (final.done, final.total) == (5, 5)
    assert switchable.calls - before == 3
    assert find(store, "Practitioner", "name=doc") == [f"d{n}" for n in range(5)]
    assert find(store, "Patient", "name=name") == []  # the job never left its type
