"""Invariants over many seeds, patient counts and record windows (hypothesis)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medarchive.demo import generate
from medarchive.demo.codes import ICD10, SNOMED

Resource = dict[str, Any]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(seed=st.integers(min_value=-2**40, max_value=2**40),
       patients=st.integers(min_value=0, max_value=3),
       start=st.dates(min_value=date(1990, 1, 1), max_value=date(2030, 12, 31)))
def test_every_generated_bundle_keeps_the_invariants(
        seed: int, patients: int, start: date,
        problems: Callable[[Resource], list[str]]) -> None:
    bundles = list(generate(patients, seed=seed, start=start))
    assert len(bundles) == patients
    last = (date(start.year + 10, start.month, min(start.day, 28)) + timedelta(
        days=start.day - min(start.day, 28) - 1)).isoformat()
    for bundle in bundles:
        assert problems(bundle) == []
        for entry in bundle["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] == "Condition":
                systems = {c["system"] for c in resource["code"]["coding"]}
                assert systems == {ICD10, SNOMED}
            if resource["resourceType"] == "Encounter":
                assert start.isoformat() <= resource["period"]["start"][:10]
                assert resource["period"]["end"][:10] <= last
