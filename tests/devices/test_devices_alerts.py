"""NEWS2 alerts from stored readings: a Flag when the risk rises, none when it stays the same."""

from __future__ import annotations

import orjson

from medarchive.app import Services
from medarchive.devices.alerts import HEADERS, check_patients, latest_vitals
from medarchive.devices.batch import ingest_readings
from medarchive.devices.readings import KINDS
from medarchive.service.request import FhirRequest


def flags(services: Services) -> list[dict[str, object]]:
    latest: dict[str, dict[str, object]] = {}
    for version in services.store.changes(0, 100_000):
        if version.resource_type == "Flag":
            latest[version.id] = version.resource()
    return list(latest.values())


def send(services: Services, minute: int, **values: float) -> str:
    readings = [{"device": "MON-1", "kind": kind, "value": value,
                 "time": f"2024-05-01T12:{minute:02d}:00Z"} for kind, value in values.items()]
    result = ingest_readings(readings, services.router)
    assert result.refused == ()
    return str(result.observations[0]["subject"]["reference"])  # type: ignore[index]


def test_rising_score_raises_one_flag_per_level(services: Services) -> None:
    patient = send(services, 0, heart_rate=70, respiratory_rate=16, spo2=97, temperature=37)
    assert check_patients(services.router, [patient], "2024-05-01T12:00:00Z") == []
    send(services, 1, heart_rate=135, respiratory_rate=26, spo2=97, temperature=37)
    [(_, news)] = check_patients(services.router, [patient], "2024-05-01T12:01:00Z")
    assert news.total == 6 and news.risk == "medium"  # HR 3 + RR 3
    # same level again: no second alert
    assert check_patients(services.router, [patient], "2024-05-01T12:02:00Z") == []
    send(services, 3, heart_rate=135, respiratory_rate=26, spo2=90, temperature=37)
    [(_, news)] = check_patients(services.router, [patient], "2024-05-01T12:03:00Z")
    assert news.risk == "high"
    statuses = sorted(str(f["status"]) for f in flags(services))
    assert statuses == ["active", "inactive"]


def test_the_score_follows_a_deleted_or_corrected_newest_observation(
        services: Services) -> None:
    """NEWS2 reads what the store keeps of each newest vital sign: deleting the newest heart
    rate brings back the previous one, correcting it changes the score."""
    patient = send(services, 0, heart_rate=70, respiratory_rate=16, spo2=97, temperature=37)
    send(services, 1, heart_rate=135, respiratory_rate=26)
    [(_, news)] = check_patients(services.router, [patient], "2024-05-01T12:01:00Z")
    assert news.risk == "medium"
    newest = services.store.latest_vital_signs(patient)[KINDS["heart_rate"].loinc]
    services.router.handle(FhirRequest("DELETE", f"Observation/{newest.id}"), None)
    assert latest_vitals(services.router, patient)["heart_rate"] == 70
    rate = services.store.latest_vital_signs(patient)[KINDS["respiratory_rate"].loinc]
    corrected = {**rate.resource(), "valueQuantity": {**rate.resource()["valueQuantity"],
                                                      "value": 16}}
    services.router.handle(FhirRequest("PUT", f"Observation/{rate.id}",
                                       body=orjson.dumps(corrected), headers=HEADERS), None)
    assert latest_vitals(services.router, patient) == {
        "heart_rate": 70, "respiratory_rate": 16, "spo2": 97, "temperature": 37}
    assert check_patients(services.router, [patient], "2024-05-01T12:02:00Z") == []
    assert [f["status"] for f in flags(services)] == ["inactive"]  # back to low risk
