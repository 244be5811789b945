"""The shipped hospital views and metric queries: valid, the same rows on every engine, and the
derived metrics (length of stay, daily census, 30-day readmissions) right on known data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from medarchive.analytics import compile_view, library, parse_view, run_view
from medarchive.analytics.duckdb_engine import connect, create_table, create_view_table, load

NAMES = sorted(library.views())
EXPECTED = {"patient_demographics", "encounters", "diagnoses", "vital_signs", "lab_results",
            "medications", "ward_stays", "inpatient_admissions"}


def _sorted(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(r, sort_keys=True) for r in rows)


def test_the_library_has_the_hospital_views_and_queries() -> None:
    assert set(NAMES) == EXPECTED
    assert set(library.queries()) == set(library.QUERY_VIEWS)
    assert set(library.QUERY_VIEWS.values()) <= EXPECTED
    with pytest.raises(KeyError, match="have"):
        library.view("nope")


@pytest.mark.parametrize("name", NAMES)
def test_view_is_valid_and_compiles_for_both_dialects(name: str) -> None:
    view = library.view(name)
    assert view["name"] == name and view["resourceType"] == "ViewDefinition"
    model = parse_view(view)
    for engine in ("duckdb", "spark"):
        assert compile_view(model, engine).columns


@pytest.mark.parametrize("name", NAMES)
def test_duckdb_gives_the_reference_rows_on_demo_data(
        name: str, demo_resources: list[dict[str, Any]]) -> None:
    expected = run_view(library.view(name), demo_resources, "python")
    assert expected, f"{name} gives no rows on the demo data"
    assert _sorted(run_view(library.view(name), demo_resources, "duckdb")) == _sorted(expected)


def test_spark_gives_the_reference_rows_on_demo_data(
        demo_resources: list[dict[str, Any]], spark: Any) -> None:
    sample = [r for r in demo_resources if r["resourceType"] != "Observation"][:400] + \
        [r for r in demo_resources if r["resourceType"] == "Observation"][:400]
    for name in NAMES:
        expected = run_view(library.view(name), sample, "python")
        assert _sorted(run_view(library.view(name), sample, "spark", spark=spark)) == \
            _sorted(expected), name


def test_vital_signs_split_blood_pressure_into_components(
        demo_resources: list[dict[str, Any]]) -> None:
    rows = run_view(library.view("vital_signs"), demo_resources, "duckdb")
    panels = {r["observation_id"]: r for r in rows if r["panel_code"] == "85354-9"}
    assert panels
    codes = {r["loinc_code"] for r in rows if r["panel_code"] == "85354-9"}
    assert codes == {"8480-6", "8462-4"}   # systolic and diastolic, never the panel itself
    assert all(r["unit"] == "mm[Hg]" for r in rows if r["panel_code"] == "85354-9")


def _encounter(ident: str, patient: str, start: str, end: str | None, *,
               cls: str = "IMP", disposition: str = "home",
               locations: tuple[tuple[str, str, str | None], ...] = ()) -> dict[str, Any]:
    period = {"start": start} | ({"end": end} if end else {})
    return {"resourceType": "Encounter", "id": ident, "status": "finished" if end else
            "in-progress", "class": {"code": cls}, "subject": {"reference": f"Patient/{patient}"},
            "period": period,
            "hospitalization": {"dischargeDisposition": {"coding": [{"code": disposition}]}},
            "location": [{"location": {"reference": f"Location/{loc}", "display": loc},
                          "period": {"start": s} | ({"end": e} if e else {})}
                         for loc, s, e in locations]}


ENCOUNTERS = [
    _encounter("a1", "p1", "2024-01-01T10:00:00-08:00", "2024-01-05T10:00:00-08:00",
               locations=(("w1", "2024-01-01T10:00:00-08:00", "2024-01-03T12:00:00-08:00"),
                          ("w2", "2024-01-03T12:00:00-08:00", "2024-01-05T10:00:00-08:00"))),
    _encounter("a2", "p1", "2024-01-20T08:00:00-08:00", "2024-01-22T08:00:00-08:00",
               locations=(("w1", "2024-01-20T08:00:00-08:00", "2024-01-22T08:00:00-08:00"),)),
    _encounter("a3", "p1", "2024-03-30T08:00:00-08:00", "2024-04-01T08:00:00-08:00",
               disposition="exp"),
    _encounter("b1", "p2", "2024-01-02T09:00:00-08:00", "2024-01-03T09:00:00-08:00",
               locations=(("w1", "2024-01-02T09:00:00-08:00", "2024-01-03T09:00:00-08:00"),)),
    _encounter("b2", "p2", "2024-02-15T09:00:00-08:00", None),
    _encounter("c1", "p3", "2024-01-02T09:00:00-08:00", "2024-01-02T09:30:00-08:00",
               cls="AMB"),
]


@pytest.fixture
def warehouse(tmp_path: Path) -> Any:
    con = connect(tmp_path / "w.duckdb")
    create_table(con)
    load(con, ENCOUNTERS)
    for name in ("encounters", "ward_stays", "inpatient_admissions"):
        create_view_table(con, library.view(name), name)
    yield con
    con.close()


def _query(con: Any, name: str) -> list[dict[str, Any]]:
    cursor = con.execute(library.queries()[name])
    columns = [c[0] for c in cursor.description]
    return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]


def test_readmissions_within_30_days(warehouse: Any) -> None:
    rows = {r["encounter_id"]: r for r in _query(warehouse, "readmissions_30d")}
    # a3 died, b2 is still admitted, c1 is ambulatory: none is an index stay
    assert set(rows) == {"Encounter/a1", "Encounter/a2", "Encounter/b1"}
    assert rows["Encounter/a1"]["readmitted_30d"] is True
    assert rows["Encounter/a1"]["next_encounter_id"] == "Encounter/a2"
    assert rows["Encounter/a1"]["days_to_readmission"] == 15
    assert rows["Encounter/a2"]["readmitted_30d"] is False   # a3 came 68 days later
    assert rows["Encounter/b1"]["readmitted_30d"] is False   # b2 came 43 days later


def test_daily_census_counts_patients_at_midnight(warehouse: Any) -> None:
    rows = _query(warehouse, "daily_census")
    by_day: dict[str, int] = {}
    for row in rows:
        key = f"{row['day']}/{row['location_name']}"
        by_day[key] = row["census"]
    assert by_day["2024-01-02/w1"] == 1          # p1 (p2 arrived at 09:00)
    assert by_day["2024-01-03/w1"] == 2          # p1 and p2 both there at midnight
    assert by_day["2024-01-04/w2"] == 1
    assert "2024-01-04/w1" not in by_day         # p1 moved to w2, p2 left
    assert by_day["2024-01-21/w1"] == 1


def test_length_of_stay_in_days(warehouse: Any) -> None:
    rows = {r["encounter_id"]: r for r in _query(warehouse, "length_of_stay")}
    assert float(rows["Encounter/a1"]["length_of_stay_days"]) == 4.0
    assert float(rows["Encounter/c1"]["length_of_stay_days"]) == round(30 / 1440, 2)
    assert rows["Encounter/b2"]["still_admitted"] is True
