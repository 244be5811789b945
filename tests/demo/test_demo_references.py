"""Every reference in generated data resolves: within the patient's bundle by urn:uuid, or to
the hospital's shared resources by Type/id (R4 §3.1.0.11.2)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medarchive.demo import generate_ndjson

Resource = dict[str, Any]


def test_sample_has_no_broken_invariant(sample: list[Resource],
                                        problems: Callable[[Resource], list[str]]) -> None:
    found = {p for bundle in sample for p in problems(bundle)}
    assert not found, sorted(found)[:20]


def test_checker_catches_a_dangling_reference(sample: list[Resource],
                                              problems: Callable[[Resource], list[str]]) -> None:
    bundle = {**sample[0], "entry": [e for e in sample[0]["entry"]
                                     if e["resource"]["resourceType"] != "Encounter"]}
    assert any("dangling" in p for p in problems(bundle))
    broken = {**sample[0], "entry": [*sample[0]["entry"][:1], {
        **sample[0]["entry"][1],
        "resource": {**sample[0]["entry"][1]["resource"],
                     "recorder": {"reference": "Practitioner/nobody"}}}, *sample[0]["entry"][2:]]}
    assert any("not a shared hospital resource" in p for p in problems(broken))


def test_reference_bundle_is_puts_at_stable_ids(hospital: Resource) -> None:
    types = set()
    for entry in hospital["entry"]:
        resource = entry["resource"]
        url = f"{resource['resourceType']}/{resource['id']}"
        assert entry["request"] == {"method": "PUT", "url": url}
        assert entry["fullUrl"] == url
        types.add(resource["resourceType"])
    assert types == {"Organization", "Location", "Practitioner", "PractitionerRole"}


def test_reference_bundle_resolves_within_itself(
        hospital: Resource, shared_ids: set[str],
        references_in: Callable[[Resource], list[str]]) -> None:
    refs = {ref for entry in hospital["entry"] for ref in references_in(entry["resource"])}
    assert refs and refs <= shared_ids
    assert "Organization/hospital" in refs


def test_ndjson_references_resolve_among_the_flat_resources(
        references_in: Callable[[Resource], list[str]]) -> None:
    flat = list(generate_ndjson(4, seed=8))
    ids = {f"{r['resourceType']}/{r['id']}" for r in flat}
    assert len(ids) == len(flat)
    dangling = {ref for r in flat for ref in references_in(r) if ref not in ids}
    assert not dangling
    assert not any(ref.startswith("urn:") for r in flat for ref in references_in(r))
