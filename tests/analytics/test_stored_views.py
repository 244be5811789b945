"""ViewDefinitions stored as Library resources: the wrapping round-trips (property test), a
stored view is found by name and versioned, and non-view Libraries are ignored."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medarchive.analytics.stored import find_view, store_view, stored_views, unwrap, wrap
from medarchive.analytics.viewdef import ViewError
from medarchive.fhir.search.index import build_indexer
from medarchive.fhir.spec import load_spec
from medarchive.fhir.validate import validate_resource
from medarchive.service.repository import Repository
from medarchive.store.memory import MemoryStore

SPEC = load_spec()
names = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,20}", fullmatch=True)
paths = st.sampled_from(["id", "gender", "birthDate", "name.family", "active"])


@given(names, st.lists(st.tuples(names, paths), min_size=1, max_size=5,
                       unique_by=lambda c: c[0]), st.text(max_size=30))
def test_wrap_round_trips(name: str, columns: list[tuple[str, str]], title: str) -> None:
    view = {"resourceType": "ViewDefinition", "name": name, "resource": "Patient",
            "title": title, "select": [{"column": [{"name": n, "path": p}
                                                   for n, p in columns]}]}
    library = wrap(view)
    assert unwrap(library) == view
    assert [i for i in validate_resource(library, SPEC) if i.severity == "error"] == []


def test_store_find_and_version() -> None:
    repository = Repository(MemoryStore(build_indexer(SPEC)), SPEC,
                            new_id=lambda: "x", now=lambda: datetime(2024, 1, 1, tzinfo=UTC),
                            validator=lambda r: validate_resource(r, SPEC))
    view = {"resourceType": "ViewDefinition", "name": "my_view", "resource": "Patient",
            "select": [{"column": [{"name": "id", "path": "id"}]}]}
    assert store_view(repository, view) == 1
    assert store_view(repository, {**view, "title": "again"}) == 2
    repository.update({"resourceType": "Library", "id": "other", "status": "active",
                       "type": {"text": "not a view"}}, "Library", "other")
    assert [v["name"] for v in stored_views(repository)] == ["my_view"]
    found = find_view(repository, "my_view")
    assert found is not None and found["title"] == "again"
    assert find_view(repository, "nope") is None


@pytest.mark.parametrize("view", [
    {"resourceType": "ViewDefinition", "resource": "Patient",
     "select": [{"column": [{"name": "id", "path": "id"}]}]},  # no name
    {"resourceType": "ViewDefinition", "name": "bad name", "resource": "Patient",
     "select": [{"column": [{"name": "id", "path": "id"}]}]},
    {"resourceType": "ViewDefinition", "name": "ok", "resource": "Patient"},  # no select
])
def test_refused_views(view: dict[str, Any]) -> None:
    with pytest.raises(ViewError):
        wrap(view)


def test_ids_are_unique_per_name() -> None:
    made = {wrap({"resourceType": "ViewDefinition", "name": n, "resource": "Patient",
                  "select": [{"column": [{"name": "id", "path": "id"}]}]})["id"]
            for n in ("a_b", "ab", "a1")}
    assert len(made) == 3
    assert list(itertools.islice(made, 1))
