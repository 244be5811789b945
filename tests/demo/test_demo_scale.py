"""The generator streams: memory stays flat however many patients are asked for."""

from __future__ import annotations

import tracemalloc

from medarchive.demo import generate, generate_ndjson


def _peak(patients: int) -> int:
    tracemalloc.start()
    try:
        for bundle in generate(patients, seed=13):
            assert bundle["entry"]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_patients() -> None:
    few, many = _peak(10), _peak(80)
    assert many < 2.5 * few


def test_a_huge_request_starts_at_once() -> None:
    first = next(generate(10**12, seed=1))
    assert first["entry"][0]["resource"]["resourceType"] == "Patient"
    assert next(generate_ndjson(10**12, seed=1, reference=False))["resourceType"] == "Patient"
