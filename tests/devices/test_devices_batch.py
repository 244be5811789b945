"""Batches of readings through the service path: good ones stored once, bad ones refused."""

from __future__ import annotations

import logging

import pytest

from medarchive.app import Services
from medarchive.devices.batch import ingest_readings

T = "2024-05-01T12:00:00+00:00"


def observations(services: Services) -> list[dict[str, object]]:
    return [v.resource() for v in services.store.changes(0, 100_000)
            if v.resource_type == "Observation"]


def test_readings_become_observations_of_the_assigned_patient(services: Services) -> None:
    result = ingest_readings([
        {"device": "MON-1", "kind": "heart_rate", "value": 72, "time": T},
        {"device": "MON-1", "kind": "blood_pressure", "systolic": 120, "diastolic": 80,
         "time": T},
        {"device": "MON-1", "kind": "temperature", "value": 98.6, "unit": "[degF]", "time": T},
    ], services.router)
    assert result.stored == 3 and result.refused == ()
    stored = observations(services)
    assert len(stored) == 3
    assert {o["subject"]["reference"].split("/")[0] for o in stored} == {"Patient"}
    temp = next(o for o in stored if o["code"]["coding"][0]["code"] == "8310-5")
    assert temp["valueQuantity"]["code"] == "Cel" and temp["valueQuantity"]["value"] == 37.0


def test_bad_and_unassigned_readings_are_refused_others_stored(services: Services) -> None:
    result = ingest_readings([
        {"device": "MON-1", "kind": "spo2", "value": 140, "time": T},
        {"device": "SPARE-9", "kind": "spo2", "value": 97, "time": T},
        {"device": "NOPE", "kind": "spo2", "value": 97, "time": T},
        {"device": "MON-1", "kind": "spo2", "value": 97, "time": T},
    ], services.router)
    assert result.stored == 1
    assert [r.index for r in result.refused] == [0, 1, 2]
    assert "outside" in result.refused[0].reasons[0]
    assert len(observations(services)) == 1


def test_redelivered_reading_is_stored_once(services: Services) -> None:
    reading = {"device": "MON-1", "kind": "heart_rate", "value": 72, "time": T}
    ingest_readings([reading], services.router)
    ingest_readings([reading], services.router)
    assert len(observations(services)) == 1


@pytest.mark.parametrize("database_url", ["memory"], indirect=True)
def test_refused_reading_is_logged_with_its_reasons(services: Services,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="medarchive.devices.batch"):
        result = ingest_readings([{"device": "MON-1", "kind": "spo2", "value": "high",
                                   "time": "yesterday"}], services.router)
    assert result.stored == 0
    [record] = caplog.records
    assert "reading 0 refused" in record.getMessage()
    assert "value must be a finite number" in record.getMessage()
    assert "time must be an ISO 8601" in record.getMessage()
    assert observations(services) == []
