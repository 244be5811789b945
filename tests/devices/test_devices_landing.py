"""The landing: valid readings durable in the raw table before the call returns, bad ones
refused and logged with nothing stored, redeliveries accepted once."""

from __future__ import annotations

import logging

import pytest
from device_helpers import observations, reading_time

from medarchive.app import Services
from medarchive.devices.pipeline import Pipeline
from medarchive.devices.raw import SqlReadings
from medarchive.store.sql.database import open_database


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_accepted_readings_are_committed_before_land_returns(services: Services,
                                                             pipeline: Pipeline,
                                                             database_url: str) -> None:
    readings = [{"device": "MON-1", "kind": "spo2", "value": 90 + i % 10,
                 "time": reading_time(i)} for i in range(1200)]
    result = pipeline.landing.land(readings)
    assert (result.stored, result.refused, result.duplicates) == (1200, (), 0)
    other = open_database(database_url)  # another connection: sees only committed rows
    try:
        assert SqlReadings(other).lag().pending == 1200
    finally:
        other.close()
    assert observations(services) == []  # Observations come from the materializer


def test_bad_and_unassigned_readings_are_refused_and_not_stored(
        pipeline: Pipeline, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="medarchive.devices.landing"):
        result = pipeline.landing.land([
            {"device": "MON-1", "kind": "spo2", "value": 140, "time": reading_time(0)},
            {"device": "SPARE-9", "kind": "spo2", "value": 97, "time": reading_time(1)},
            {"device": "NOPE", "kind": "spo2", "value": 97, "time": reading_time(2)},
            {"device": "MON-1", "kind": "spo2", "value": "x", "time": "noon"},
            {"device": "MON-1", "kind": "spo2", "value": 97, "time": reading_time(4)},
        ])
    assert result.stored == 1
    assert [r.index for r in result.refused] == [0, 1, 2, 3]
    assert "outside" in result.refused[0].reasons[0]
    assert "unknown or not assigned" in result.refused[2].reasons[0]
    assert len(result.refused[3].reasons) == 2
    assert pipeline.readings.lag().pending == 1
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 4 and "reading 3 refused" in logged[3]


def test_redelivered_readings_are_accepted_and_held_once(pipeline: Pipeline) -> None:
    reading = {"device": "MON-1", "kind": "heart_rate", "value": 72, "time": reading_time(0)}
    first = pipeline.landing.land([reading, reading])
    again = pipeline.landing.land([reading, reading | {"time": reading_time(1)}])
    assert (first.stored, first.duplicates) == (2, 1)
    assert (again.stored, again.duplicates) == (2, 1)
    assert pipeline.readings.lag().pending == 2


def test_a_reassigned_device_is_followed_once_the_cache_expired(services: Services,
                                                                pipeline: Pipeline) -> None:
    spo2 = {"device": "SPARE-9", "kind": "spo2", "value": 97, "time": reading_time(0)}
    assert pipeline.landing.land([spo2]).stored == 0
    pipeline.landing.assignments.ttl_s = 0
    found = [v for v in services.store.changes(0, 1000) if v.resource_type == "Device"]
    unassigned = next(v.resource() for v in found if "patient" not in v.resource())
    patient = next(v.resource()["patient"] for v in found if "patient" in v.resource())
    services.repository.update({**unassigned, "patient": patient}, "Device", unassigned["id"])
    assert pipeline.landing.land([spo2]).stored == 1
