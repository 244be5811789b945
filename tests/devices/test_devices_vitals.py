"""The materializer's templates (``devices.vitals``): the Observations and index rows it makes
without the generic machinery equal what the generic validator and indexer say of them."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medarchive.devices.raw import Row
from medarchive.devices.readings import KINDS, Reading
from medarchive.devices.vitals import VitalSigns, check_row
from medarchive.errors import Unprocessable
from medarchive.fhir.search.entries import IndexEntries
from medarchive.fhir.search.index import build_indexer
from medarchive.fhir.validate import validate_resource

WHEN = datetime(2026, 11, 29, 3, 0, 0, 123456, tzinfo=UTC)
ROW_KINDS = {"blood_pressure": 2}


@pytest.fixture(scope="module")
def indexer(spec: Any) -> Any:
    return build_indexer(spec)


@pytest.fixture(scope="module")
def vitals(indexer: Any) -> VitalSigns:
    return VitalSigns(indexer)


def row(kind: str, values: tuple[float, ...], time: str = "2024-05-01T12:00:00.25+02:00",
        device: str = "MON-7", patient: str = "Patient/p-1",
        device_ref: str = "Device/d-1") -> Row:
    key = Reading(device, kind, values, time).key
    return Row(key, device, kind, values, time, 0, patient, device_ref, 0, 1)


def sample_values(kind: str, fraction: float) -> tuple[float, ...]:
    spec = KINDS[kind]
    if kind == "blood_pressure":
        high = round(spec.low + 1 + (spec.high - spec.low - 1) * fraction, 3)
        return high, round(high * fraction / 2, 3)
    return (round(spec.low + (spec.high - spec.low) * fraction, 3),)


def by_param(entries: IndexEntries, param: str) -> dict[str, list[Any]]:
    """The rows of one parameter (its ``:text``/``:identifier`` rows included), per kind."""
    out: dict[str, list[Any]] = {}
    for field in dataclasses.fields(entries):
        if field.name == "params":
            continue
        rows = [e for e in getattr(entries, field.name)
                if e.param == param or e.param.startswith(param + ":")]
        out[field.name] = sorted(rows, key=repr)
    out["params"] = sorted(p for p in entries.params if p == param)
    return out


def assert_same_rows(spec: Any, indexer: Any, vitals: VitalSigns, landed: Row) -> None:
    change, entries = vitals.change(landed, "obs-1", WHEN)
    generic = indexer(change.resource)
    params = set(spec.search_params("Observation")) | {"_content", "_text"}
    for param in sorted(params):
        assert by_param(entries, param) == by_param(generic, param), param
    assert entries.params == generic.params
    for field in dataclasses.fields(entries):
        if field.name != "params":
            assert sorted(getattr(entries, field.name), key=repr) == \
                sorted(getattr(generic, field.name), key=repr), field.name


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("fraction", [0.0, 0.37, 1.0])
def test_index_rows_equal_the_generic_indexers(spec: Any, indexer: Any, vitals: VitalSigns,
                                               kind: str, fraction: float) -> None:
    assert_same_rows(spec, indexer, vitals, row(kind, sample_values(kind, fraction)))


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(sorted(KINDS)), fraction=st.floats(0, 1),
       moment=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1),
                           timezones=st.just(UTC)),
       precision=st.sampled_from(["seconds", "milliseconds", "microseconds"]),
       patient=st.from_regex(r"[A-Za-z0-9\-.]{1,64}", fullmatch=True))
def test_index_rows_equal_the_generic_indexers_for_any_reading(
        spec: Any, indexer: Any, vitals: VitalSigns, kind: str, fraction: float,
        moment: datetime, precision: str, patient: str) -> None:
    landed = row(kind, sample_values(kind, fraction), moment.isoformat(timespec=precision),
                 patient=f"Patient/{patient}")
    assert_same_rows(spec, indexer, vitals, landed)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_observations_pass_the_full_r4_validator(spec: Any, vitals: VitalSigns,
                                                 kind: str) -> None:
    change, _ = vitals.change(row(kind, sample_values(kind, 0.5)), "obs-1", WHEN)
    assert change.resource is not None
    errors = [i for i in validate_resource(change.resource, spec)
              if i.severity in ("error", "fatal")]
    assert errors == []
    assert change.resource["meta"] == {"versionId": "1",
                                       "lastUpdated": "2026-11-29T03:00:00.123456Z"}
    assert list(change.resource)[:3] == ["resourceType", "id", "meta"]


@pytest.mark.parametrize(("landed", "problem"), [
    (row("heart_rate", (351.0,)), "outside"),
    (row("heart_rate", (70.0, 60.0)), "needs 1 value"),
    (row("blood_pressure", (80.0, 120.0)), "systolic must exceed"),
    (row("pulse", (70.0,)), "kind must be one of"),
    (row("spo2", (97.0,), time="2024-05-01T12:00:00"), "UTC offset"),
    (row("spo2", (97.0,), patient="Device/x"), "not a Patient reference"),
    (row("spo2", (97.0,), device_ref="Device/bad id"), "not a Device reference"),
    (dataclasses.replace(row("spo2", (97.0,)), key="MON-7/spo2/other"), "does not match"),
])
def test_landed_rows_are_validated_strictly(landed: Row, problem: str) -> None:
    with pytest.raises(Unprocessable) as refused:
        check_row(landed)
    assert any(problem in (i.diagnostics or "") for i in refused.value.issues)
