"""Bundle helpers: entries of history/searchset Bundles and the Reference walk (R4 §2.36)."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from medarchive.fhir.bundle import (
    bundle,
    history_entry,
    instant,
    references,
    rewrite_references,
    search_entry,
)
from medarchive.store.base import Version

WHEN = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)


def version(vid: int, deleted: bool = False) -> Version:
    body = b"" if deleted else b'{"resourceType":"Patient","id":"p"}'
    return Version("Patient", "p", vid, WHEN, deleted, body)


def test_instant_is_utc_with_z() -> None:
    assert instant(WHEN) == "2024-05-06T07:08:09.123456Z"


def test_history_entries() -> None:
    first = history_entry("http://b", version(1))
    assert first["request"] == {"method": "POST", "url": "Patient"}
    assert first["response"]["status"] == "201 Created"
    assert first["response"]["etag"] == 'W/"1"'
    update = history_entry("http://b", version(2))
    assert update["request"] == {"method": "PUT", "url": "Patient/p"}
    gone = history_entry("http://b", version(3, deleted=True))
    assert "resource" not in gone and gone["request"]["method"] == "DELETE"
    encoded = orjson.loads(orjson.dumps(bundle("history", [first, gone], total=2)))
    assert encoded["entry"][0]["resource"] == {"resourceType": "Patient", "id": "p"}
    assert encoded["entry"][0]["fullUrl"] == "http://b/Patient/p"


def test_search_entry_embeds_given_resource_or_stored_bytes() -> None:
    entry = search_entry("http://b", version(1), {"resourceType": "Patient", "id": "x"})
    assert entry["resource"]["id"] == "x" and entry["search"] == {"mode": "match"}
    raw = orjson.loads(orjson.dumps(search_entry("http://b", version(1))))
    assert raw["resource"]["id"] == "p"


def test_bundle_shape() -> None:
    made = bundle("searchset", [], total=0, links=[("self", "http://b/Patient")])
    assert made == {"resourceType": "Bundle", "type": "searchset", "total": 0,
                    "link": [{"relation": "self", "url": "http://b/Patient"}], "entry": []}


def test_references_are_found_everywhere() -> None:
    resource = {
        "resourceType": "Observation",
        "subject": {"reference": "urn:uuid:1"},
        "performer": [{"reference": "urn:uuid:2"}, {"display": "no ref"}],
        "extension": [{"url": "u", "valueReference": {"reference": "urn:uuid:3"}}],
        "contained": [{"resourceType": "Patient",
                       "link": [{"other": {"reference": "urn:uuid:4"}}]}],
        "component": [{"extension": [{"extension": [{"valueReference": {"reference": "#c"}}]}]}],
    }
    assert sorted(r["reference"] for r in references(resource)) == [
        "#c", "urn:uuid:1", "urn:uuid:2", "urn:uuid:3", "urn:uuid:4"]


def test_rewrite_references_and_narrative_links() -> None:
    resource = {
        "resourceType": "Observation",
        "text": {"status": "generated",
                 "div": '<div xmlns="http://www.w3.org/1999/xhtml"><a href="urn:uuid:1">p</a>'
                        '<img src="urn:uuid:9"/></div>'},
        "subject": {"reference": "urn:uuid:1"},
        "focus": [{"reference": "Patient/keep"}],
    }
    mapping = {"urn:uuid:1": "Patient/new"}
    assert rewrite_references(resource, mapping.get) == 1
    assert resource["subject"] == {"reference": "Patient/new"}
    assert resource["focus"] == [{"reference": "Patient/keep"}]
    assert 'href="Patient/new"' in resource["text"]["div"]
    assert 'src="urn:uuid:9"' in resource["text"]["div"]
