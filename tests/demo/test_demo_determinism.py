"""Same arguments, same bytes: the generator is a pure function of (patients, seed, start)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import orjson

from medarchive.demo import generate, generate_ndjson, reference_bundle


def _bytes(items: object) -> bytes:
    return orjson.dumps(items)


def test_same_seed_gives_identical_bytes() -> None:
    assert _bytes(list(generate(6, seed=11))) == _bytes(list(generate(6, seed=11)))
    assert _bytes(reference_bundle(11)) == _bytes(reference_bundle(11))
    assert _bytes(list(generate_ndjson(3, seed=11))) == _bytes(list(generate_ndjson(3, seed=11)))


def test_different_seeds_give_different_patients() -> None:
    first, second = list(generate(3, seed=1)), list(generate(3, seed=2))
    assert _bytes(first) != _bytes(second)
    urls = {e["fullUrl"] for b in first for e in b["entry"]}
    assert not urls & {e["fullUrl"] for b in second for e in b["entry"]}
    assert _bytes(reference_bundle(1)) != _bytes(reference_bundle(2))


def test_fewer_patients_is_a_prefix_of_more() -> None:
    assert _bytes(list(generate(3, seed=5))) == _bytes(list(generate(8, seed=5))[:3])


def test_hospital_ids_do_not_depend_on_the_seed() -> None:
    urls = [[e["request"]["url"] for e in reference_bundle(seed)["entry"]] for seed in (0, 9)]
    assert urls[0] == urls[1]
    assert "Practitioner/prac-0007" in urls[0]


def test_start_moves_the_record_window() -> None:
    early = next(generate(1, seed=3, start=date(2001, 1, 1)))
    late = next(generate(1, seed=3, start=date(2011, 1, 1)))
    years = {e["resource"]["period"]["start"][:4] for e in early["entry"]
             if e["resource"]["resourceType"] == "Encounter"}
    assert years and all("2001" <= y <= "2010" for y in years)
    assert early["entry"][0]["resource"]["birthDate"] < late["entry"][0]["resource"][
        "birthDate"]


def test_ndjson_is_the_bundle_with_final_ids() -> None:
    bundles = list(generate(2, seed=4))
    flat = list(generate_ndjson(2, seed=4, reference=False))
    entries = [e for b in bundles for e in b["entry"]]
    assert [r["id"] for r in flat] == [e["fullUrl"].removeprefix("urn:uuid:") for e in entries]
    for entry, resource in zip(entries, flat, strict=True):
        rebuilt = dict(resource)
        del rebuilt["id"]
        text = _bytes(rebuilt).decode()
        for other in entries:
            uid = other["fullUrl"].removeprefix("urn:uuid:")
            text = text.replace(f'"{other["resource"]["resourceType"]}/{uid}"',
                                f'"urn:uuid:{uid}"')
        assert text == _bytes(entry["resource"]).decode()


def test_ndjson_starts_with_the_hospital() -> None:
    flat = generate_ndjson(1, seed=2)
    hospital = [e["resource"] for e in reference_bundle(2)["entry"]]
    assert [next(flat) for _ in hospital] == hospital


def test_ids_are_version_4_uuids(sample: list[dict[str, Any]]) -> None:
    for bundle in sample[:5]:
        for entry in bundle["entry"]:
            parsed = uuid.UUID(entry["fullUrl"].removeprefix("urn:uuid:"))
            assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
            assert str(parsed) == entry["fullUrl"].removeprefix("urn:uuid:")
