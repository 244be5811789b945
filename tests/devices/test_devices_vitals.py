"""The materializer's templates (``devices.vitals``): the Observations and index rows it makes
without the generic machinery equal what the generic validator, indexer and SQL store say of
them, with and without encryption at rest (blind indexes)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medarchive.crypto.blind import BlindIndex
from medarchive.crypto.encryption import compartment_owner
from medarchive.devices.raw import Row
from medarchive.devices.readings import KINDS, Reading
from medarchive.devices.vitals import VitalSigns, _parsed_row, _plain_row, check_row
from medarchive.errors import Unprocessable
from medarchive.fhir.search.index import build_indexer
from medarchive.fhir.validate import validate_resource
from medarchive.store.sql.indexing import IndexRows, index_rows

WHEN = datetime(2026, 11, 29, 3, 0, 0, 123456, tzinfo=UTC)
ROW_KINDS = {"blood_pressure": 2}


@pytest.fixture(scope="module")
def indexer(spec: Any) -> Any:
    return build_indexer(spec)


BLIND = BlindIndex(b"k" * 32)


@pytest.fixture(scope="module", params=["plain", "blinded"])
def blind(request: pytest.FixtureRequest) -> BlindIndex | None:
    """The store's blind index: None without encryption at rest, one key with it."""
    return BLIND if request.param == "blinded" else None


@pytest.fixture(scope="module")
def vitals(indexer: Any, blind: BlindIndex | None) -> VitalSigns:
    return VitalSigns(indexer, blind)


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


def by_table(rows: IndexRows) -> dict[str, list[tuple[Any, ...]]]:
    """Rows per table, sorted (a table may come several times in ``rows``)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    for table, found in rows:
        out.setdefault(table, []).extend(found)
    return {table: sorted(found, key=repr) for table, found in out.items()}


def assert_same_rows(spec: Any, indexer: Any, vitals: VitalSigns, blind: BlindIndex | None,
                     landed: Row) -> None:
    """The template's rows are the rows the SQL store writes for the generic indexer's entries
    (blinded as the store blinds them), and its data-key owner is the store's."""
    change, rows = vitals.change(landed, "obs-1", WHEN)
    assert change.resource is not None
    generic = indexer(change.resource)
    stored = generic if blind is None else blind.entries("Observation", generic)
    expected = by_table(index_rows("Observation", stored))
    got = by_table(rows)
    for table in sorted(set(expected) | set(got)):
        assert got.get(table) == expected.get(table), table
    assert compartment_owner(spec)("Observation", "obs-1", stored) == landed.patient


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("fraction", [0.0, 0.37, 1.0])
def test_index_rows_equal_the_generic_indexers(spec: Any, indexer: Any, vitals: VitalSigns,
                                               blind: BlindIndex | None, kind: str,
                                               fraction: float) -> None:
    assert_same_rows(spec, indexer, vitals, blind, row(kind, sample_values(kind, fraction)))


MOMENTS = st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1),
                       timezones=st.sampled_from([UTC, timezone(timedelta(hours=-5)),
                                                  timezone(timedelta(hours=5, minutes=30))]))
IDS = st.from_regex(r"[A-Za-z0-9\-.]{1,64}", fullmatch=True)


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(sorted(KINDS)), fraction=st.floats(0, 1), moment=MOMENTS,
       precision=st.sampled_from(["seconds", "milliseconds", "microseconds"]),
       patient=IDS, device=IDS)
def test_index_rows_equal_the_generic_indexers_for_any_reading(
        spec: Any, indexer: Any, vitals: VitalSigns, blind: BlindIndex | None, kind: str,
        fraction: float, moment: datetime, precision: str, patient: str, device: str) -> None:
    landed = row(kind, sample_values(kind, fraction), moment.isoformat(timespec=precision),
                 device=device, patient=f"Patient/{patient}", device_ref=f"Device/{device}")
    assert_same_rows(spec, indexer, vitals, blind, landed)


@settings(max_examples=40, deadline=None)
@given(kind=st.sampled_from(sorted(KINDS)), fraction=st.floats(0, 1), moment=MOMENTS,
       patient=IDS)
def test_observations_pass_the_full_r4_validator(spec: Any, indexer: Any, kind: str,
                                                 fraction: float, moment: datetime,
                                                 patient: str) -> None:
    vitals = VitalSigns(indexer)
    landed = row(kind, sample_values(kind, fraction), moment.isoformat(),
                 patient=f"Patient/{patient}")
    change, _ = vitals.change(landed, "obs-1", WHEN)
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


@settings(max_examples=80, deadline=None)
@given(kind=st.sampled_from(sorted(KINDS)), fraction=st.floats(0, 1), moment=MOMENTS,
       precision=st.sampled_from(["seconds", "milliseconds", "microseconds"]),
       patient=IDS, device=IDS)
def test_landed_rows_are_read_directly_as_the_parser_reads_them(
        kind: str, fraction: float, moment: datetime, precision: str, patient: str,
        device: str) -> None:
    """A row as the landing stores it skips the parser (``_plain_row``) and reads the same."""
    landed = row(kind, sample_values(kind, fraction), moment.isoformat(timespec=precision),
                 device=device, patient=f"Patient/{patient}", device_ref=f"Device/{device}")
    assert _plain_row(landed) == _parsed_row(landed) == check_row(landed)


ODD_VALUES = st.lists(st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                                st.integers(-10, 400).map(float),
                                st.floats(-10, 400).map(lambda v: round(v, 4))),
                      min_size=0, max_size=3).map(tuple)


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from([*sorted(KINDS), "pulse"]), values=ODD_VALUES,
       time=st.one_of(MOMENTS.map(datetime.isoformat), st.just("2024-05-01T12:00:00"),
                      st.just("2024-05-01"), st.text(max_size=30)),
       device=st.one_of(IDS, st.text(max_size=70)),
       patient=st.sampled_from(["Patient/p-1", "Device/p-1", "Patient/bad id", "Patient/"]),
       other_key=st.booleans())
def test_rows_read_directly_are_only_rows_the_parser_accepts(
        kind: str, values: tuple[float, ...], time: str, device: str, patient: str,
        other_key: bool) -> None:
    """Whatever a row holds, reading it directly gives the parser's reading or nothing (then
    the parser says what is wrong): the shortcut accepts nothing the parser refuses."""
    landed = Row(f"{device}/{kind}/{time}" + ("x" if other_key else ""), device, kind, values,
                 time, 0, patient, "Device/d-1", 0, 1)
    try:
        parsed: Reading | None = _parsed_row(landed)
    except Unprocessable:
        parsed = None
    plain = _plain_row(landed)
    assert plain is None or plain == parsed
