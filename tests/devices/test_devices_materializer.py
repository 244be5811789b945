"""The materializer: every landed reading becomes exactly one Observation, through crashes,
concurrent materializers and redeliveries; NEWS2 alerts from readings still pending."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path

import pytest
from device_helpers import observations, reading_time
from starlette.exceptions import StarletteDeprecationWarning

from medarchive.app import Services, build_services, create_app
from medarchive.devices.materializer import YOUNG, ordered_ids
from medarchive.devices.pipeline import Pipeline, open_pipeline
from medarchive.devices.raw import lane
from medarchive.devices.readings import DEVICE_SYSTEM, READING_SYSTEM
from medarchive.service.repository import ID_PATTERN
from medarchive.settings import Settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

HERE = Path(__file__).resolve().parent


def land(pipeline: Pipeline, count: int, first: int = 0) -> None:
    kinds = [("heart_rate", 70), ("spo2", 97), ("respiratory_rate", 16), ("temperature", 37)]
    readings = [{"device": "MON-1", "kind": kinds[i % 4][0], "value": kinds[i % 4][1],
                 "time": reading_time(i)} for i in range(first, first + count)]
    assert pipeline.landing.land(readings).stored == count


def exactly_once(services: Services, pipeline: Pipeline, count: int) -> None:
    """Every reading has one Observation, and the row names it; nothing else was made."""
    made = observations(services)
    keys = [o["identifier"][0]["value"] for o in made
            if o["identifier"][0]["system"] == READING_SYSTEM]
    assert len(keys) == len(set(keys)) == count
    assert pipeline.readings.lag().pending == 0


def test_pending_readings_become_complete_observations(services: Services,
                                                       pipeline: Pipeline) -> None:
    pipeline.landing.land([
        {"device": "MON-1", "kind": "blood_pressure", "systolic": 120, "diastolic": 80,
         "time": reading_time(0)},
        {"device": "MON-1", "kind": "temperature", "value": 98.6, "unit": "[degF]",
         "time": reading_time(1)}])
    assert pipeline.materializer.run_once().materialized == 2
    made = {o["code"]["coding"][0]["code"]: o for o in observations(services)}
    assert set(made) == {"85354-9", "8310-5"}
    assert made["8310-5"]["valueQuantity"] == {"value": 37.0, "unit": "Cel",
                                               "system": "http://unitsofmeasure.org",
                                               "code": "Cel"}
    assert [c["valueQuantity"]["value"] for c in made["85354-9"]["component"]] == [120, 80]
    assert made["8310-5"]["subject"]["reference"].startswith("Patient/")
    assert made["8310-5"]["device"]["reference"].startswith("Device/")
    assert pipeline.materializer.run_once().materialized == 0
    # searchable through the REST path like any Observation
    found = services.repository.find("Observation", [("code", "http://loinc.org|8310-5")],
                                     what="test")
    assert [v.id for v in found] == [made["8310-5"]["id"]]


def test_batches_and_redeliveries_make_each_observation_once(services: Services,
                                                             pipeline: Pipeline) -> None:
    pipeline.materializer.batch = 7
    land(pipeline, 30)
    assert pipeline.materializer.drain() == 30
    land(pipeline, 30)  # redelivered after materialization: already held
    land(pipeline, 5, first=30)
    assert pipeline.materializer.drain() == 5
    exactly_once(services, pipeline, 35)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_observations_get_time_ordered_ids(services: Services, pipeline: Pipeline) -> None:
    land(pipeline, 3)
    assert pipeline.materializer.run_once().materialized == 3
    ids = [uuid.UUID(o["id"]) for o in observations(services)]
    assert [(i.version, i.variant) for i in ids] == [(7, uuid.RFC_4122)] * 3


def test_ordered_ids_sort_by_the_millisecond_they_were_made() -> None:
    """RFC 9562 §5.7: the first 48 bits are Unix milliseconds; the rest is random."""
    moments = [1_764_000_000_000_000_000 + n * 1_000_000 for n in range(40)]
    made = [ordered_ids(1, lambda moment=moment: moment)[0] for moment in moments]
    assert sorted(made) == made and len(set(made)) == len(made)
    assert all(ID_PATTERN.match(i) for i in made)
    assert [uuid.UUID(i).int >> 80 for i in made] == [m // 1_000_000 for m in moments]


def test_a_batch_of_ordered_ids_shares_its_millisecond_and_differs_in_the_rest() -> None:
    made = ordered_ids(500, lambda: 1_764_000_000_123_456_789)
    ids = [uuid.UUID(i) for i in made]
    assert len(set(made)) == 500 and all(ID_PATTERN.match(i) for i in made)
    assert {i.int >> 80 for i in ids} == {1_764_000_000_123}
    assert {(i.version, i.variant) for i in ids} == {(7, uuid.RFC_4122)}
    assert len({i.int & (1 << 62) - 1 for i in ids}) == 500  # the random bits differ


def test_concurrent_materializers_never_make_a_reading_twice(services: Services,
                                                             pipeline: Pipeline) -> None:
    land(pipeline, 400)
    # a second materializer over the same database, racing for the same rows
    other = build_services(services.settings)
    try:
        rival = open_pipeline(other, batch=50)
        pipeline.materializer.batch = 50
        done: list[int] = []
        threads = [threading.Thread(target=lambda m=m: done.append(m.drain()))
                   for m in (pipeline.materializer, rival.materializer)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        other.close()
    assert sum(done) == 400
    exactly_once(services, pipeline, 400)


def add_monitors(services: Services, count: int) -> list[str]:
    """``count`` more patients, each with a monitor ``LANE-i`` assigned; their device ids."""
    entries = []
    for i in range(count):
        full = f"urn:uuid:00000000-0000-4000-8000-{i:012d}"
        entries += [
            {"fullUrl": full, "resource": {"resourceType": "Patient"},
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Device",
                          "identifier": [{"system": DEVICE_SYSTEM, "value": f"LANE-{i}"}],
                          "patient": {"reference": full}},
             "request": {"method": "POST", "url": "Device"}}]
    services.submit({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    return [f"LANE-{i}" for i in range(count)]


def test_shards_split_the_readings_by_patient_lane(services: Services,
                                                   pipeline: Pipeline) -> None:
    devices = add_monitors(services, 12)
    pipeline.landing.land([{"device": devices[i % 12], "kind": "heart_rate", "value": 60 + i,
                            "time": reading_time(i)} for i in range(120)])
    every = pipeline.readings.pending(1000)
    assert len({lane(r.patient) % 2 for r in every}) == 2  # both shards have work
    for n in (2, 3, 4):
        for k in range(n):  # the SQL lane is the Python one
            assert [r.seq for r in pipeline.readings.pending(1000, (k, n))] == \
                [r.seq for r in every if lane(r.patient) % n == k]
    made: dict[str, list[str]] = {}
    shard = pipeline.materializer
    shard.batch, shard.alerts = 7, False
    for k in (1, 0):
        shard.shard = (k, 2)
        before = {o["id"] for o in observations(services)}
        assert shard.drain() == sum(lane(r.patient) % 2 == k for r in every)
        for o in observations(services):
            if o["id"] not in before:
                made.setdefault(o["subject"]["reference"], []).append(o["effectiveDateTime"])
    assert pipeline.readings.lag().pending == 0
    for patient, times in made.items():  # each patient's readings made in landing order
        assert times == [r.effective for r in every if r.patient == patient]


def test_cli_materializes_with_several_worker_processes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'workers.db'}"
    services = build_services(Settings(database_url=url, auth="off",
                                       encryption_key_file=str(tmp_path / "k.kek")))
    try:
        pipeline = open_pipeline(services)
        devices = add_monitors(services, 8)
        pipeline.landing.land([{"device": devices[i % 8], "kind": "spo2", "value": 90 + i % 9,
                                "time": reading_time(i)} for i in range(200)])
    finally:
        services.close()
    env = {**os.environ, "MEDARCHIVE_DATABASE_URL": url, "MEDARCHIVE_AUTH": "off",
           "MEDARCHIVE_ENCRYPTION_KEY_FILE": str(tmp_path / "k.kek")}
    done = subprocess.run([sys.executable, "-c", "from medarchive.cli.main import main; main()",
                           "devices", "materialize", "--once", "--workers", "2"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "materialized 200 readings" in done.stdout
    services = build_services(Settings(database_url=url, auth="off",
                                       encryption_key_file=str(tmp_path / "k.kek")))
    try:
        assert len(observations(services)) == 200
        assert open_pipeline(services).readings.lag().pending == 0
    finally:
        services.close()


def test_alerts_come_from_readings_not_yet_materialized(services: Services,
                                                        pipeline: Pipeline) -> None:
    pipeline.landing.land([
        {"device": "MON-1", "kind": "heart_rate", "value": 135, "time": reading_time(0)},
        {"device": "MON-1", "kind": "respiratory_rate", "value": 26, "time": reading_time(0)},
        {"device": "MON-1", "kind": "spo2", "value": 97, "time": reading_time(0)}])
    pipeline.materializer.batch = 1  # alerts are scored from every pending reading
    cycle = pipeline.materializer.run_once()
    assert (cycle.materialized, cycle.alerts) == (1, 1)
    flags = [v.resource() for v in services.store.changes(0, 1000)
             if v.resource_type == "Flag"]
    assert len(flags) == 1 and "NEWS2 6 (medium risk)" in flags[0]["code"]["text"]
    pipeline.materializer.drain()
    assert len([v for v in services.store.changes(0, 1000) if v.resource_type == "Flag"]) == 1


def test_prune_drops_only_old_materialized_rows(services: Services,
                                                pipeline: Pipeline) -> None:
    land(pipeline, 10)
    pipeline.materializer.batch = 6
    pipeline.materializer.run_once()
    pipeline.materializer.keep_s = -1  # everything materialized counts as old
    assert pipeline.materializer.prune() == 6
    assert pipeline.readings.lag().pending == 4
    assert len(observations(services)) == 6


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_killed_materializer_loses_and_duplicates_nothing(services: Services,
                                                          pipeline: Pipeline,
                                                          database_url: str) -> None:
    total = 1500
    land(pipeline, total)
    pending: set[str] = set()
    for _kill in range(3):
        proc = subprocess.Popen([sys.executable, str(HERE / "materializer_process.py"),
                                 database_url, "40"], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        start = pipeline.readings.lag().pending
        deadline = time.monotonic() + 60
        while pipeline.readings.lag().pending > start - 150 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)  # somewhere inside a cycle
        proc.wait(10)
        proc.stdout.close()
        # after every kill: a row is pending without an Observation, or has exactly one
        made = {o["identifier"][0]["value"]: o["id"] for o in observations(services)}
        assert len(made) == len(observations(services))
        pending = {r.key for r in pipeline.readings.pending(total)}
        assert not pending & set(made)
        assert len(made) + len(pending) == total
    assert pipeline.materializer.drain() == len(pending)
    exactly_once(services, pipeline, total)


@pytest.mark.parametrize(("workers", "runs"), [(1, True), (2, False)])
def test_server_runs_a_materializer_only_with_one_worker(workers: int, runs: bool) -> None:
    settings = Settings(database_url="memory://", auth="off", workers=workers)
    services = build_services(settings)
    with TestClient(create_app(settings, services=services)):
        thread = services.devices.materializer._thread
        assert (thread is not None and thread.is_alive()) == runs
    assert thread is None or not thread.is_alive()  # stopped with the app


def test_the_running_materializer_freezes_what_the_process_holds(pipeline: Pipeline) -> None:
    """``run`` moves the long-lived objects out of the cyclic collector's view first (full
    collections then walk only what the batches make), makes the young generation larger,
    and still materializes."""
    gc.unfreeze()
    thresholds = gc.get_threshold()
    pipeline.landing.land([{"device": "MON-1", "kind": "heart_rate", "value": 70,
                            "time": reading_time(0)}])
    try:
        pipeline.materializer.start()
        deadline = time.monotonic() + 30
        while pipeline.readings.lag().pending and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pipeline.readings.lag().pending == 0
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (YOUNG, *thresholds[1:])
    finally:
        pipeline.materializer.stop()
        gc.unfreeze()
        gc.set_threshold(*thresholds)
