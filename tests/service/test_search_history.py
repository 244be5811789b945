"""Search (R4 §3.1.1) and history (§3.1.0.9) Bundles: totals, entries, paging links."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from medarchive.errors import BadRequest
from medarchive.service.request import FhirResponse
from medarchive.service.search import parse_instant


def patient(family: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "name": [{"family": family}], **fields}


def links(bundle: dict[str, Any]) -> dict[str, str]:
    return {link["relation"]: link["url"] for link in bundle.get("link", [])}


def follow(call: Any, url: str) -> FhirResponse:
    parts = urlsplit(url)
    path = parts.path.removeprefix("/fhir").strip("/")
    return call("GET", path, query=parse_qsl(parts.query, keep_blank_values=True))


def parsed(response: FhirResponse) -> Any:
    return orjson.loads(response.content())


def ids(bundle: dict[str, Any]) -> list[str]:
    return [e["resource"]["id"] for e in bundle.get("entry", [])]


@pytest.fixture
def seven(call: Any) -> None:
    for n in range(7):
        call("PUT", f"Patient/p{n}", {**patient("Smith" if n % 2 else "Jones", gender="male"),
                                      "id": f"p{n}"})


def test_searchset_shape(call: Any, seven: None) -> None:
    bundle = parsed(call("GET", "Patient", query=[("family", "smith")]))
    assert bundle["type"] == "searchset" and bundle["total"] == 3
    assert sorted(ids(bundle)) == ["p1", "p3", "p5"]
    entry = bundle["entry"][0]
    assert entry["fullUrl"] == f"http://test/fhir/Patient/{entry['resource']['id']}"
    assert entry["search"] == {"mode": "match"}
    assert links(bundle)["self"] == "http://test/fhir/Patient?family=smith&_count=5"


def test_paging_links_walk_every_result_once(call: Any, seven: None) -> None:
    first = parsed(call("GET", "Patient", query=[("_count", "3"), ("_sort", "_id")]))
    assert first["total"] == 7 and ids(first) == ["p0", "p1", "p2"]
    assert "previous" not in links(first)
    assert links(first)["last"].endswith("_offset=6")
    seen = ids(first)
    page = first
    while "next" in links(page):
        page = parsed(follow(call, links(page)["next"]))
        seen += ids(page)
    assert seen == [f"p{n}" for n in range(7)]
    assert "previous" in links(page)
    back = parsed(follow(call, links(page)["previous"]))
    assert ids(back) == ["p3", "p4", "p5"]


def test_default_and_max_page_size(call: Any, seven: None) -> None:
    assert len(parsed(call("GET", "Patient"))["entry"]) == 5
    capped = parsed(call("GET", "Patient", query=[("_count", "500")]))
    assert len(capped["entry"]) == 7 and "_count=50" in links(capped)["self"]


def test_total_none_still_pages(call: Any, seven: None) -> None:
    bundle = parsed(call("GET", "Patient", query=[("_total", "none"), ("_count", "4")]))
    assert "total" not in bundle and len(bundle["entry"]) == 4 and "next" in links(bundle)
    rest = parsed(follow(call, links(bundle)["next"]))
    assert len(rest["entry"]) == 3 and "next" not in links(rest)
    assert call("GET", "Patient", query=[("_total", "maybe")]).status == 400


def test_summary_count_and_elements(call: Any, seven: None) -> None:
    counted = parsed(call("GET", "Patient", query=[("_summary", "count")]))
    assert counted["total"] == 7 and counted["entry"] == []
    shaped = parsed(call("GET", "Patient", query=[("_elements", "gender")]))
    assert all(set(e["resource"]) == {"resourceType", "id", "meta", "gender"}
               for e in shaped["entry"])
    assert "_elements=gender" in links(shaped)["self"]


def test_unknown_parameters_lenient_and_strict(call: Any, seven: None) -> None:
    lenient = call("GET", "Patient", query=[("family", "smith"), ("nonsense", "1"),
                                            ("_contained", "true")])
    bundle = parsed(lenient)
    assert bundle["total"] == 3
    assert "nonsense" not in links(bundle)["self"] and "_contained" not in links(bundle)["self"]
    strict = call("GET", "Patient", query=[("nonsense", "1")], prefer="handling=strict")
    assert strict.status == 400 and "nonsense" in parsed(strict)["issue"][0]["diagnostics"]
    assert call("GET", "Patient", query=[("birthdate", "notadate")]).status == 400


def test_post_search_with_form_body(call: Any, seven: None) -> None:
    response = call("POST", "Patient/_search", b"family=smith&_count=2",
                    content_type="application/x-www-form-urlencoded",
                    query=[("gender", "male")])
    bundle = parsed(response)
    assert bundle["total"] == 3 and len(bundle["entry"]) == 2
    assert links(bundle)["self"].startswith("http://test/fhir/Patient?")
    assert call("POST", "Patient/_search", b"{}", content_type="application/json").status == 400
    counted = parsed(call("POST", "Patient/_search", b"family=smith&_summary=count&_total=none",
                          content_type="application/x-www-form-urlencoded"))
    assert counted["total"] == 3 and counted["entry"] == []


def test_system_search(call: Any, seven: None) -> None:
    call("POST", "Observation", {"resourceType": "Observation", "status": "final",
                                 "code": {"text": "x"}})
    everything = parsed(call("GET", "", query=[("_count", "0")]))
    assert everything["total"] == 8
    typed = parsed(call("GET", "", query=[("_type", "Observation")]))
    assert typed["total"] == 1
    assert typed["entry"][0]["fullUrl"].startswith("http://test/fhir/Observation/")
    assert call("GET", "", query=[("_type", "Nope")]).status == 400


def test_history_levels_and_deletions(call: Any) -> None:
    call("PUT", "Patient/a", {**patient("A"), "id": "a"})
    call("PUT", "Patient/a", {**patient("A2"), "id": "a"})
    call("PUT", "Patient/b", {**patient("B"), "id": "b"})
    call("DELETE", "Patient/a")
    call("POST", "Observation", {"resourceType": "Observation", "status": "final",
                                 "code": {"text": "x"}})
    instance = parsed(call("GET", "Patient/a/_history"))
    assert instance["type"] == "history" and instance["total"] == 3
    methods = [e["request"]["method"] for e in instance["entry"]]
    assert methods == ["DELETE", "PUT", "POST"]
    assert "resource" not in instance["entry"][0]
    assert instance["entry"][0]["response"]["etag"] == 'W/"3"'
    assert parsed(call("GET", "Patient/_history"))["total"] == 4
    assert parsed(call("GET", "_history"))["total"] == 5
    assert call("GET", "Patient/zz/_history").status == 404
    assert call("GET", "_history", query=[("_at", "2024")]).status == 501
    assert call("GET", "_history", query=[("_since", "soon")]).status == 400
    assert parsed(call("GET", "_history", query=[("_summary", "count")]))["entry"] == []


def test_history_since(call: Any) -> None:
    for n in range(4):  # the clock ticks one second per write
        call("PUT", f"Patient/p{n}", {**patient("X"), "id": f"p{n}"})
    since = parsed(call("GET", "_history", query=[("_since", "2024-01-01T00:00:02Z")]))
    assert [e["resource"]["id"] for e in since["entry"]] == ["p3", "p2"]
    assert "_since=2024-01-01T00:00:02Z" in links(since)["self"]
    assert parsed(call("GET", "_history", query=[("_since", "2024")]))["total"] == 4


def test_history_paging_is_pinned_to_a_snapshot(call: Any) -> None:
    for n in range(5):
        call("PUT", f"Patient/p{n}", {**patient("X"), "id": f"p{n}"})
    first = parsed(call("GET", "_history", query=[("_count", "2")]))
    assert [e["resource"]["id"] for e in first["entry"]] == ["p4", "p3"]
    for n in range(5, 8):  # writes after the first page must not shift later pages
        call("PUT", f"Patient/p{n}", {**patient("X"), "id": f"p{n}"})
    second = parsed(follow(call, links(first)["next"]))
    assert [e["resource"]["id"] for e in second["entry"]] == ["p2", "p1"]
    assert second["total"] == 5
    third = parsed(follow(call, links(second)["next"]))
    assert [e["resource"]["id"] for e in third["entry"]] == ["p0"]
    assert "next" not in links(third)
    assert call("GET", "_history", query=[("_snapshot", "x")]).status == 400


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5))])))
def test_since_parser_round_trips_instants(moment: datetime) -> None:
    assert parse_instant(moment.isoformat()) == moment
    assert parse_instant(moment.isoformat().replace("+00:00", "Z")) == moment


@given(st.text(max_size=30))
def test_since_parser_gives_an_aware_instant_or_400(text: str) -> None:
    try:
        moment = parse_instant(text)
    except BadRequest:
        return
    assert moment.tzinfo is not None


def test_since_parser_partial_dates() -> None:
    assert parse_instant("2024") == datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_instant("2024-05") == datetime(2024, 5, 1, tzinfo=UTC)
    assert parse_instant("2024-05-06T07:08:09") == datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
