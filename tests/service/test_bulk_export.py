"""The export stream against the store's own idea of "current": after any sequence of writes
and deletions, whatever the page size, every current resource comes out exactly once at its
current version, and nothing changed after the cut does (property tests). Also ``_since``."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from medarchive.errors import BadRequest
from medarchive.fhir.search.index import build_indexer
from medarchive.fhir.spec import load_spec
from medarchive.service.bulk.export import parse_since, stream
from medarchive.service.repository import Repository
from medarchive.store.memory import MemoryStore

SPEC = load_spec()
INDEXER = build_indexer(SPEC)
IDS = st.sampled_from(["a", "b", "c", "d", "e"])
OPS = st.lists(st.tuples(st.sampled_from(["put", "put", "delete"]),
                         st.sampled_from(["Patient", "Practitioner"]), IDS), max_size=30)
PARAMS = {"level": "system", "types": ["Patient", "Practitioner"], "type_filters": {},
          "since": None}


def fresh() -> Repository:
    ticks = itertools.count()
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return Repository(MemoryStore(INDEXER), SPEC, new_id=lambda: "x",
                      now=lambda: start + timedelta(seconds=next(ticks)))


def apply(repository: Repository, ops: list[tuple[str, str, str]]) -> None:
    for op, rtype, rid in ops:
        if op == "put":
            repository.update({"resourceType": rtype, "id": rid}, rtype, rid)
        else:
            repository.delete(rtype, rid)


def current(repository: Repository) -> set[tuple[str, str, int]]:
    found = set()
    for rtype in PARAMS["types"]:
        for rid in "abcde":
            version = repository.store.read(rtype, rid)
            if version is not None and not version.deleted:
                found.add((rtype, rid, version.version_id))
    return found


@settings(max_examples=60, deadline=None)
@given(OPS, OPS, st.integers(min_value=1, max_value=7))
def test_stream_is_the_current_state_at_the_cut(before: list[tuple[str, str, str]],
                                                after: list[tuple[str, str, str]],
                                                page: int) -> None:
    repository = fresh()
    apply(repository, before)
    expected = current(repository)
    cut = repository.last_seq()
    apply(repository, after)  # changes after the kick-off
    exported = [(v.resource_type, v.id, v.version_id)
                for v in stream(repository, PARAMS, after_seq=0, max_seq=cut, page=page)]
    assert len(exported) == len(set(exported))
    # a resource changed after the cut is left out; the others are exactly the state at the cut
    changed_after = {(rtype, rid) for _, rtype, rid in after}
    assert set(exported) == {e for e in expected if e[:2] not in changed_after}


def test_since_and_stop() -> None:
    repository = fresh()
    apply(repository, [("put", "Patient", "a"), ("put", "Patient", "b"),
                       ("put", "Patient", "c")])
    since = repository.read("Patient", "b").last_updated.isoformat()
    params: dict[str, Any] = {**PARAMS, "since": since}
    found = [v.id for v in stream(repository, params, after_seq=0,
                                  max_seq=repository.last_seq())]
    assert found == ["b", "c"]
    stopped = list(stream(repository, PARAMS, after_seq=0, max_seq=repository.last_seq(),
                          page=1, on_page=lambda seq: False))
    assert [v.id for v in stopped] == ["a"]


@given(st.datetimes(timezones=st.builds(lambda m: timezone(timedelta(minutes=m)),
                                        st.integers(-14 * 60, 14 * 60))))
def test_since_parses_any_aware_instant(moment: datetime) -> None:
    assert parse_since(moment.isoformat()) == moment


@given(st.text(max_size=30))
def test_since_refuses_garbage(text: str) -> None:
    try:
        parsed = parse_since(text)
    except BadRequest:
        return
    assert parsed.tzinfo is not None
