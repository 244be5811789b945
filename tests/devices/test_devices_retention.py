"""Compaction of old readings into per-minute summaries, in one transaction per page."""

from __future__ import annotations

from medarchive.app import Services
from medarchive.devices.batch import ingest_readings
from medarchive.devices.pipeline import Pipeline
from medarchive.devices.retention import SUMMARY_SYSTEM, compact


def current_observations(services: Services) -> list[dict[str, object]]:
    latest: dict[str, object] = {}
    for version in services.store.changes(0, 100_000):
        if version.resource_type == "Observation":
            latest[version.id] = None if version.deleted else version.resource()
    return [o for o in latest.values() if o is not None]  # type: ignore[misc]


def test_old_readings_become_minute_summaries(services: Services) -> None:
    readings = [{"device": "MON-1", "kind": "heart_rate", "value": v,
                 "time": f"2024-05-01T12:00:{s:02d}Z"} for s, v in ((0, 60), (20, 70), (40, 80))]
    readings.append({"device": "MON-1", "kind": "heart_rate", "value": 50,
                     "time": "2024-05-01T12:01:30+00:00"})  # next minute
    readings.append({"device": "MON-1", "kind": "heart_rate", "value": 90,
                     "time": "2024-05-03T12:00:00Z"})  # recent: kept raw
    readings.append({"device": "MON-1", "kind": "blood_pressure", "systolic": 120,
                     "diastolic": 80, "time": "2024-05-01T12:00:00Z"})  # panel: kept raw
    assert ingest_readings(readings, services.router).stored == 6
    # page=3 would end inside minute 12:00's readings only; minute 12:01 waits for a page
    assert compact(services.router, "2024-05-02T00:00:00Z", page=3) == 4
    remaining = current_observations(services)
    summaries = [o for o in remaining
                 if o["identifier"][0]["system"] == SUMMARY_SYSTEM]  # type: ignore[index]
    assert len(remaining) == 4 and len(summaries) == 2
    means = sorted(s["valueQuantity"]["value"] for s in summaries)  # type: ignore[index]
    assert means == [50.0, 70.0]
    twelve = next(s for s in summaries if s["valueQuantity"]["value"] == 70.0)  # type: ignore[index]
    stats = [c["valueQuantity"]["value"] for c in twelve["component"]]  # type: ignore[index]
    assert stats == [60, 80, 3]
    assert compact(services.router, "2024-05-02T00:00:00Z") == 0  # summaries stay


def test_materialized_readings_are_compacted_like_any(services: Services,
                                                      pipeline: Pipeline) -> None:
    """Observations made by the materializer's templates (``devices.vitals``) are found and
    compacted by the retention policy as those of the service path are."""
    readings = [{"device": "MON-1", "kind": "spo2", "value": v,
                 "time": f"2024-05-01T08:30:{s:02d}.5+02:00"} for s, v in ((1, 95), (31, 97))]
    readings.append({"device": "MON-1", "kind": "spo2", "value": 90,
                     "time": "2024-05-03T12:00:00Z"})  # recent: kept raw
    assert pipeline.landing.land(readings).stored == 3
    assert pipeline.materializer.drain() == 3
    assert compact(services.router, "2024-05-02T00:00:00Z") == 2
    remaining = current_observations(services)
    summaries = [o for o in remaining
                 if o["identifier"][0]["system"] == SUMMARY_SYSTEM]  # type: ignore[index]
    assert len(remaining) == 2 and len(summaries) == 1
    assert summaries[0]["valueQuantity"]["value"] == 96.0  # type: ignore[index]
    assert summaries[0]["effectivePeriod"]["start"] == "2024-05-01T06:30:00Z"  # type: ignore[index]
