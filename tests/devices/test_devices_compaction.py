"""The retention policy runs by itself: on a schedule, one process at a time, logged and
audited (``devices.compaction``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from device_helpers import observations
from typer.testing import CliRunner

from medarchive.app import Services, build_devices, build_services
from medarchive.cli.main import app
from medarchive.devices.audit import RETENTION
from medarchive.devices.compaction import (
    JOB,
    AlreadyRunning,
    RetentionSchedule,
    open_runs,
    run_compaction,
)
from medarchive.devices.readings import DEVICE_SYSTEM
from medarchive.devices.retention import SUMMARY_SYSTEM
from medarchive.settings import Settings, parse_interval

NOW = datetime.now(UTC).replace(second=0, microsecond=0)
OLD = NOW - timedelta(days=10)  # older than the 7 days kept
RECENT = NOW - timedelta(days=2)


def at(moment: datetime, second: int) -> str:
    return (moment + timedelta(seconds=second)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def secured(database_url: str) -> Iterator[Services]:
    """Security on; one patient with monitor MON-1."""
    built = build_services(Settings(database_url=database_url, auth="on"))
    built.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
         "resource": {"resourceType": "Patient", "name": [{"family": "Bed"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Device",
                      "identifier": [{"system": DEVICE_SYSTEM, "value": "MON-1"}],
                      "patient": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"}},
         "request": {"method": "POST", "url": "Device"}}]})
    yield built
    built.close()


def land(services: Services) -> None:
    """Old readings (two minutes of heart rate, one of SpO2) and recent ones, materialized."""
    pipeline = build_devices(services)
    pipeline.materializer.alerts = False
    readings = [{"device": "MON-1", "kind": "heart_rate", "value": v, "time": at(OLD, s)}
                for s, v in ((0, 60), (20, 70), (40, 80), (65, 50))]
    readings += [{"device": "MON-1", "kind": "spo2", "value": v, "time": at(OLD, s)}
                 for s, v in ((1, 95), (31, 97))]
    readings += [{"device": "MON-1", "kind": "heart_rate", "value": v, "time": at(RECENT, s)}
                 for s, v in ((0, 90), (10, 91))]
    assert pipeline.landing.land(readings).stored == 8
    assert pipeline.materializer.drain() == 8


def wait_for(condition: Callable[[], bool], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def summaries(services: Services) -> list[dict[str, Any]]:
    return [o for o in observations(services)
            if o["identifier"][0]["system"] == SUMMARY_SYSTEM]


def test_the_schedule_compacts_by_itself(secured: Services,
                                         caplog: pytest.LogCaptureFixture) -> None:
    land(secured)
    recent = {o["id"]: o for o in observations(secured) if o["effectiveDateTime"] >= at(
        RECENT, 0)}
    schedule = RetentionSchedule(secured, keep_days=7, every_s=3600, poll_s=0.05)
    caplog.set_level(logging.INFO, logger="medarchive.devices.compaction")
    schedule.start()
    try:
        wait_for(lambda: schedule.last is not None)
    finally:
        schedule.stop()
    assert schedule.last is not None
    assert (schedule.last.readings, schedule.last.summaries) == (6, 3)
    made = {(s["code"]["coding"][0]["code"], s["effectivePeriod"]["start"]):
            (s["valueQuantity"]["value"], [c["valueQuantity"]["value"] for c in s["component"]])
            for s in summaries(secured)}
    minute = OLD.strftime("%Y-%m-%dT%H:%M")
    later = (OLD + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M")
    assert made == {("8867-4", f"{minute}:00Z"): (70.0, [60, 80, 3]),
                    ("8867-4", f"{later}:00Z"): (50.0, [50, 50, 1]),
                    ("59408-5", f"{minute}:00Z"): (96.0, [95, 97, 2])}
    left = {o["id"]: o for o in observations(secured)
            if o["identifier"][0]["system"] != SUMMARY_SYSTEM}
    assert left == recent  # nothing newer touched; the old raw readings are gone
    assert "compacted 6 readings older than" in caplog.text
    [event] = [e for _, e in secured.security.trail.events(0, 100_000)
               if e["agent"][0]["who"]["identifier"]["value"] == RETENTION.id
               and e["subtype"][0]["code"] == "admin"]
    assert event["action"] == "U" and "into 3 summaries" in event["outcomeDesc"]
    assert secured.security.trail.verify()[1] is None


def test_a_run_waits_for_its_interval_and_for_a_running_one(secured: Services) -> None:
    runs = open_runs(secured.store)
    land(secured)
    held = int(time.time() * 1e6)
    assert runs.claim(JOB, held, 0, 600_000_000)  # another process's run under way
    with pytest.raises(AlreadyRunning):
        run_compaction(secured, runs, 7)
    assert summaries(secured) == []
    runs.finish(JOB, held, "done elsewhere")
    with pytest.raises(AlreadyRunning):  # the last run ended less than an hour ago
        run_compaction(secured, runs, 7, every_s=3600)
    assert run_compaction(secured, runs, 7, every_s=0).readings == 6
    last = runs.last(JOB)
    assert last is not None and last[1].startswith("compacted 6 readings")


def test_a_dead_runs_lease_expires(secured: Services) -> None:
    runs = open_runs(secured.store)
    assert runs.claim(JOB, 1_000, 0, 500)
    assert not runs.claim(JOB, 1_400, 0, 500)
    assert runs.claim(JOB, 1_501, 0, 500)


# a memory store lives in one process: SQL stores only
@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_two_schedules_on_one_database_compact_once(secured: Services,
                                                    database_url: str) -> None:
    land(secured)
    other = build_services(Settings(database_url=database_url, auth="on"))
    schedules = [RetentionSchedule(s, keep_days=7, every_s=3600, poll_s=0.02)
                 for s in (secured, other)]
    try:
        for schedule in schedules:
            schedule.start()
        wait_for(lambda: any(s.last is not None for s in schedules))
        time.sleep(0.3)  # the other polls several times meanwhile
    finally:
        for schedule in schedules:
            schedule.stop()
        other.close()
    assert sorted(s.last is not None for s in schedules) == [False, True]
    assert len(summaries(secured)) == 3


def test_the_cli_compacts_now_and_refuses_when_nothing_is_kept(tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}"
    services = build_services(Settings(database_url=url, auth="off"))
    try:
        services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Patient", "id": "p1"},
             "request": {"method": "PUT", "url": "Patient/p1"}},
            {"resource": {"resourceType": "Device",
                          "identifier": [{"system": DEVICE_SYSTEM, "value": "MON-1"}],
                          "patient": {"reference": "Patient/p1"}},
             "request": {"method": "POST", "url": "Device"}}]})
        land(services)
    finally:
        services.close()
    runner = CliRunner()
    done = runner.invoke(app, ["--database-url", url, "devices", "compact", "--days", "7"])
    assert done.exit_code == 0, done.output
    assert "compacted 6 readings" in done.output and "into 3 summaries" in done.output
    refused = runner.invoke(app, ["--database-url", url, "devices", "compact", "--days", "0"])
    assert refused.exit_code == 2


def test_serve_starts_the_schedule_when_an_age_and_interval_are_set(tmp_path: Any) -> None:
    from medarchive.cli.serve import _start_retention

    url = f"sqlite:///{tmp_path / 's.db'}"
    assert _start_retention(Settings(database_url=url, device_retention_every="")) is None
    assert _start_retention(Settings(database_url=url, device_retention_days=0)) is None
    schedule = _start_retention(Settings(database_url=url, device_retention_every="2h"))
    try:
        assert (schedule.every_s, schedule.keep_days, schedule.poll_s) == (7200, 30, 60)
        assert schedule._thread.is_alive()
    finally:
        schedule.stop()
        schedule.services.close()


def test_intervals_parse() -> None:
    every = [parse_interval(text, "device_retention_every") for text in ("", "90", "15m", "1d")]
    assert every == [0.0, 90.0, 900.0, 86400.0]
    with pytest.raises(ValueError, match="device_retention_every"):
        parse_interval("soon", "device_retention_every")
