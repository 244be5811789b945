"""The Store contract: every backend (memory, SQLite, PostgreSQL) must pass these same tests."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from medarchive.errors import AlreadyApplied, VersionConflict
from medarchive.fhir.search.dates import date_range
from medarchive.fhir.search.query import (
    Predicate,
    QuantityValue,
    RangeValue,
    ReferenceValue,
    SearchQuery,
    SortKey,
    StringValue,
    TokenValue,
    UriValue,
)
from medarchive.store.base import Change, HistoryQuery, Store, iter_changes

T0 = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


def change(resource: dict[str, Any], version: int = 1, expected: int = 0,
           when: datetime = T0, deleted: bool = False) -> Change:
    body = b"" if deleted else orjson.dumps(resource)
    return Change(resource["resourceType"], resource["id"], version, expected, when, deleted,
                  body, None if deleted else resource)


def patient(pid: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "id": pid, **extra}


def ids(versions: list[Any]) -> list[str]:
    return [v.id for v in versions]


def q(*predicates: Predicate, rtype: str = "Patient", **kw: Any) -> SearchQuery:
    return SearchQuery(rtype, tuple(predicates), **kw)


def test_create_read_vread(store: Store) -> None:
    [written] = store.write([change(patient("a", gender="female"))])
    assert written.version_id == 1 and written.seq >= 1
    got = store.read("Patient", "a")
    assert got is not None and got.resource()["gender"] == "female"
    assert got.last_updated == T0 and not got.deleted
    assert store.read("Patient", "missing") is None
    assert store.vread("Patient", "a", 1) == got
    assert store.vread("Patient", "a", 2) is None


def test_update_keeps_every_version(store: Store) -> None:
    store.write([change(patient("a", gender="female"))])
    store.write([change(patient("a", gender="male"), 2, 1, T0 + timedelta(seconds=1))])
    assert store.read("Patient", "a").version_id == 2  # type: ignore[union-attr]
    assert store.vread("Patient", "a", 1).resource()["gender"] == "female"  # type: ignore[union-attr]
    assert store.vread("Patient", "a", 2).resource()["gender"] == "male"  # type: ignore[union-attr]


def test_create_of_existing_conflicts(store: Store) -> None:
    store.write([change(patient("a"))])
    with pytest.raises(VersionConflict) as info:
        store.write([change(patient("a"))])
    assert info.value.actual == 1


def test_stale_update_conflicts_and_writes_nothing(store: Store) -> None:
    store.write([change(patient("a")), change(patient("b"))])
    store.write([change(patient("a"), 2, 1)])
    with pytest.raises(VersionConflict):
        store.write([change(patient("b", gender="male"), 2, 1), change(patient("a"), 2, 1)])
    assert store.read("Patient", "b").version_id == 1  # type: ignore[union-attr]
    assert store.count(q(Predicate("gender", "token", (TokenValue(None, "male"),)))) == 0


def test_transaction_is_atomic_on_conflict(store: Store) -> None:
    store.write([change(patient("x"))])
    with pytest.raises(VersionConflict):
        store.write([change(patient("new1")), change(patient("x"))])
    assert store.read("Patient", "new1") is None
    assert store.last_seq() == 1


def test_delete_is_a_version(store: Store) -> None:
    store.write([change(patient("a", gender="male"))])
    store.write([change(patient("a"), 2, 1, deleted=True)])
    current = store.read("Patient", "a")
    assert current is not None and current.deleted and current.body == b""
    assert store.count(q()) == 0
    assert store.count(q(Predicate("gender", "token", (TokenValue(None, "male"),)))) == 0
    store.write([change(patient("a", gender="other"), 3, 2)])
    assert ids(store.search(q(Predicate("gender", "token", (TokenValue(None, "other"),))))) == ["a"]


def test_no_lost_update_under_concurrent_writers(store: Store) -> None:
    store.write([change(patient("c"))])
    wins: list[int] = []
    errors: list[Exception] = []

    def writer(n: int) -> None:
        for _ in range(200):
            current = store.read("Patient", "c")
            assert current is not None
            try:
                store.write([change(patient("c", rank=n), current.version_id + 1,
                                    current.version_id)])
                wins.append(n)
                return
            except VersionConflict:
                continue
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)
                return

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(wins) == 6
    final = store.read("Patient", "c")
    assert final is not None and final.version_id == 7
    assert [store.vread("Patient", "c", v) is not None for v in range(1, 8)] == [True] * 7


def test_token_search(store: Store) -> None:
    store.write([
        change(patient("a", identifier=[{"system": "urn:mrn", "value": "1"}])),
        change(patient("b", identifier=[{"system": "urn:other", "value": "1"}])),
        change(patient("c", identifier=[{"value": "1"}])),
    ])
    tok = lambda s, c: q(Predicate("identifier", "token", (TokenValue(s, c),)))  # noqa: E731
    assert ids(store.search(tok(None, "1"))) == ["a", "b", "c"]
    assert ids(store.search(tok("urn:mrn", "1"))) == ["a"]
    assert ids(store.search(tok("", "1"))) == ["c"]
    assert ids(store.search(tok("urn:other", None))) == ["b"]
    negated = q(Predicate("identifier", "token", (TokenValue("urn:mrn", "1"),), "not"))
    assert ids(store.search(negated)) == ["b", "c"]
    either = q(Predicate("identifier", "token", (TokenValue("urn:mrn", "1"),
                                                 TokenValue("urn:other", "1"))))
    assert store.count(either) == 2


def test_string_search_modifiers(store: Store) -> None:
    store.write([change(patient("a", name=[{"family": "Müller"}])),
                 change(patient("b", name=[{"family": "Mullins"}])),
                 change(patient("c", name=[{"family": "Amull"}]))])
    s = lambda v, m=None: q(Predicate("family", "string", (StringValue(v),), m))  # noqa: E731
    assert ids(store.search(s("mul"))) == ["a", "b"]
    assert ids(store.search(s("mull", "contains"))) == ["a", "b", "c"]
    assert ids(store.search(s("Müller", "exact"))) == ["a"]
    assert ids(store.search(s("muller", "exact"))) == []
    assert ids(store.search(s("50%", "contains"))) == []


def test_reference_search(store: Store) -> None:
    obs = lambda oid, ref: {"resourceType": "Observation", "id": oid,  # noqa: E731
                            "subject": {"reference": ref}}
    store.write([change(obs("o1", "Patient/p1")), change(obs("o2", "Group/p1")),
                 change(obs("o3", "Patient/p2"))])
    r = lambda t, i: q(Predicate("subject", "reference", (ReferenceValue(t, i),)),  # noqa: E731
                       rtype="Observation")
    assert ids(store.search(r("Patient", "p1"))) == ["o1"]
    assert ids(store.search(r(None, "p1"))) == ["o1", "o2"]


def test_date_prefixes(store: Store) -> None:
    store.write([change(patient("y1980", birthDate="1980")),
                 change(patient("d1980", birthDate="1980-06-15")),
                 change(patient("d1990", birthDate="1990-01-01"))])

    def d(prefix: str, text: str) -> list[str]:
        low, high = date_range(text)
        return ids(store.search(q(Predicate("birthdate", "date",
                                            (RangeValue(prefix, low, high),)))))

    assert d("eq", "1980") == ["y1980", "d1980"]
    assert d("eq", "1980-06") == ["d1980"]
    assert d("ap", "1980-06") == ["y1980", "d1980"]
    assert d("gt", "1980") == ["d1990"]
    assert d("ge", "1980-06-15") == ["y1980", "d1980", "d1990"]
    assert d("lt", "1980-06-15") == ["y1980"]
    assert d("le", "1980-06-15") == ["y1980", "d1980"]
    assert d("sa", "1985") == ["d1990"]
    assert d("eb", "1985") == ["y1980", "d1980"]
    assert d("ne", "1980") == ["d1990"]


def test_number_quantity_uri(store: Store) -> None:
    obs = {"resourceType": "Observation", "id": "o", "valueQuantity": {
        "value": 7.25, "system": "http://unitsofmeasure.org", "code": "mmol/L"}}
    store.write([change(patient("n1", rank=100)), change(patient("n2", rank=1.5)), change(obs),
                 change({"resourceType": "ValueSet", "id": "v", "url": "http://x/vs"})])
    n = lambda p, lo, hi: ids(store.search(q(  # noqa: E731
        Predicate("rank", "number", (RangeValue(p, lo, hi),)))))
    assert n("eq", 99.5, 100.5) == ["n1"]
    assert n("lt", 2, 2) == ["n2"]
    qty = q(Predicate("value-quantity", "quantity", (
        QuantityValue("gt", 7, 7, "http://unitsofmeasure.org", "mmol/L"),)), rtype="Observation")
    assert ids(store.search(qty)) == ["o"]
    wrong_unit = q(Predicate("value-quantity", "quantity", (
        QuantityValue("gt", 7, 7, None, "mg/dL"),)), rtype="Observation")
    assert store.search(wrong_unit) == []
    uri = q(Predicate("url", "uri", (UriValue("http://x/vs"),)), rtype="ValueSet")
    assert ids(store.search(uri)) == ["v"]


def test_missing_id_and_last_updated(store: Store) -> None:
    store.write([change(patient("a", gender="male"), when=T0),
                 change(patient("b"), when=T0 + timedelta(days=1))])
    assert ids(store.search(q(Predicate("gender", "token", (), "missing", True)))) == ["b"]
    assert ids(store.search(q(Predicate("gender", "token", (), "missing", False)))) == ["a"]
    assert ids(store.search(q(Predicate("_id", "id", (TokenValue(None, "b"),))))) == ["b"]
    low, high = date_range("2024-01-02")
    after = q(Predicate("_lastUpdated", "lastUpdated", (RangeValue("ge", low, high),)))
    assert ids(store.search(after)) == ["b"]


def test_sort_count_offset(store: Store) -> None:
    store.write([change(patient(p, name=[{"family": f}], birthDate=b))
                 for p, f, b in [("p1", "Zed", "1990"), ("p2", "Abel", "1970"),
                                 ("p3", "Moss", "2000"), ("p4", "Kim", "1980")]])
    store.write([change(patient("p5"))])
    by_name = q(sort=(SortKey("family", "string"),))
    assert ids(store.search(by_name)) == ["p2", "p4", "p3", "p1", "p5"]
    desc = q(sort=(SortKey("birthdate", "date", True),))
    assert ids(store.search(desc)) == ["p3", "p1", "p4", "p2", "p5"]
    assert ids(store.search(q(sort=(SortKey("_id", "_id", True),), count=2, offset=1))) == \
        ["p4", "p3"]
    assert store.count(q()) == 5


def test_history_and_changes(store: Store) -> None:
    store.write([change(patient("a"), when=T0)])
    store.write([change(patient("b"), when=T0 + timedelta(hours=1))])
    store.write([change(patient("a"), 2, 1, T0 + timedelta(hours=2))])
    everything = store.history(HistoryQuery())
    assert [(v.id, v.version_id) for v in everything] == [("a", 2), ("b", 1), ("a", 1)]
    assert store.history_total(HistoryQuery(resource_type="Patient", id="a")) == 2
    since = store.history(HistoryQuery(since=T0 + timedelta(minutes=30)))
    assert [(v.id, v.version_id) for v in since] == [("a", 2), ("b", 1)]
    pinned = HistoryQuery(max_seq=everything[1].seq, count=1, offset=1)
    assert [(v.id, v.version_id) for v in store.history(pinned)] == [("a", 1)]
    assert [v.seq for v in iter_changes(store, batch=2)] == sorted(v.seq for v in everything)
    assert store.change_keys(everything[2].seq, 5) == [
        (v.seq, v.resource_type, v.id) for v in store.changes(everything[2].seq, 5)]
    assert [seq for seq, _, _ in store.change_keys(0, 2)] == [everything[2].seq,
                                                              everything[1].seq]
    assert store.last_seq() == everything[0].seq


def test_system_search_spans_types(store: Store) -> None:
    store.write([change(patient("a")), change({"resourceType": "Observation", "id": "a"})])
    assert store.count(SearchQuery(None)) == 2
    assert sorted(v.resource_type for v in store.search(SearchQuery(None))) == \
        ["Observation", "Patient"]


def test_idempotency_key_applies_once(store: Store) -> None:
    store.write([change(patient("a"))], idempotency_key="hl7:LAB:123")
    assert store.applied("hl7:LAB:123") and not store.applied("hl7:LAB:124")
    with pytest.raises(AlreadyApplied):
        store.write([change(patient("b"))], idempotency_key="hl7:LAB:123")
    assert store.read("Patient", "b") is None
    with pytest.raises(VersionConflict):
        store.write([change(patient("a"))], idempotency_key="hl7:LAB:125")
    assert not store.applied("hl7:LAB:125")
