"""Device readings encrypted at rest (``devices.sealed``, migration 0016), the proof of issue 5
extended to issue 6: with encryption on, neither the SQLite file with its WAL nor a ``pg_dump``
holds a device's identifier, a reading's key or its time as text — whether the readings are
still raw (landed, pending) or materialized. The control run with encryption off finds them, so
the scan is shown to see them. Sealed rows open to the same readings, duplicates are still held
once; ``keys shred`` deletes the patient's raw readings at once, and sealed readings whose data
key was shredded (a copy restored from before the shred) are dropped, never made."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from medarchive.app import Services, build_devices, build_services
from medarchive.devices.readings import DEVICE_SYSTEM
from medarchive.settings import Settings
from medarchive.store.sql.keyadmin import shred

PG_DUMP = "/usr/bin/pg_dump"
DEVICE = "WARDMONITOR-7731"
TIMES = [f"2031-07-13T04:05:{s:02d}.{s:03d}+00:00" for s in range(10, 40)]


def open_services(url: str, folder: Path, encryption: str) -> Services:
    services = build_services(Settings(database_url=url, auth="off", encryption=encryption,
                                       encryption_key_file=str(folder / "medarchive.kek")))
    services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
         "resource": {"resourceType": "Patient", "name": [{"family": "Bed"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Device",
                      "identifier": [{"system": DEVICE_SYSTEM, "value": DEVICE}],
                      "patient": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"}},
         "request": {"method": "POST", "url": "Device"}}]})
    return services


def readings() -> list[dict[str, Any]]:
    return [{"device": DEVICE, "kind": "heart_rate", "value": 60 + i, "time": time}
            for i, time in enumerate(TIMES)]


def secrets() -> set[bytes]:
    texts = {DEVICE, DEVICE.lower(), *TIMES, *(t[:19] for t in TIMES)}
    raw = {text.encode() for text in texts}
    return raw | {r.hex().encode() for r in raw}


def sqlite_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def pg_dump(url: str) -> bytes:
    parts = urlsplit(url)
    schema = parse_qs(parts.query)["options"][0].removeprefix("-csearch_path=")
    base = parts._replace(query="").geturl()
    return subprocess.run([PG_DUMP, "--no-owner", "--schema", schema, base], check=True,
                          capture_output=True, timeout=120).stdout


def scan(url: str, folder: Path, encryption: str, dump: Any) -> None:
    """Land (raw rows) and scan, then materialize and scan again."""
    services = open_services(url, folder, encryption)
    try:
        pipeline = build_devices(services)
        assert pipeline.landing.land(readings()).stored == len(TIMES)
        for stage in ("raw", "materialized"):
            if stage == "materialized":
                assert pipeline.materializer.drain() == len(TIMES)
            dumped = dump()  # once: a pg_dump per secret took minutes on a busy machine
            found = {s for s in secrets() if s in dumped}
            if encryption == "on":
                assert not found, (stage, sorted(found)[:5])
            else:  # the control: the scan sees the readings when they are plaintext
                assert found, stage
    finally:
        services.close()


@pytest.mark.parametrize("encryption", ["on", "off"])
def test_sqlite_file_and_wal_hold_no_reading_in_plaintext(tmp_path: Path,
                                                          encryption: str) -> None:
    db = tmp_path / "proof.db"
    scan(f"sqlite:///{db}", tmp_path, encryption, lambda: sqlite_bytes(db))


@pytest.mark.parametrize("encryption", ["on", "off"])
def test_pg_dump_holds_no_reading_in_plaintext(postgres_schema_url: str, tmp_path: Path,
                                               encryption: str) -> None:
    if shutil.which(PG_DUMP) is None:
        pytest.skip(f"{PG_DUMP} not found (apt-get install postgresql-client)")
    scan(postgres_schema_url, tmp_path, encryption, lambda: pg_dump(postgres_schema_url))


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_sealed_rows_open_to_the_readings_and_stay_unique(database_url: str,
                                                          tmp_path: Path) -> None:
    services = open_services(database_url, tmp_path, "on")
    try:
        pipeline = build_devices(services)
        assert pipeline.readings.sealer is not None
        assert pipeline.landing.land(readings()[:5]).duplicates == 0
        assert pipeline.landing.land(readings()[:8]).duplicates == 5
        pending = pipeline.readings.pending(100)
        assert [(r.device, r.values, r.effective) for r in pending] == \
            [(DEVICE, (60.0 + i,), TIMES[i]) for i in range(8)]
        assert pipeline.readings.latest(pending[0].patient)["heart_rate"][1] == (67.0,)
        assert pipeline.materializer.drain() == 8
    finally:
        services.close()


def raw_rows(services: Services, patient: str | None = None) -> list[tuple[Any, ...]]:
    """The device_reading rows (of ``patient``), as stored."""
    db = services.store.db  # type: ignore[attr-defined]
    with db.reading() as cur:
        where = "" if patient is None else " WHERE patient = ?"
        cur.execute(db.sql(f"SELECT * FROM device_reading{where} ORDER BY seq"),
                    () if patient is None else (patient,))
        return [tuple(r) for r in cur.fetchall()]


def add_second_patient(services: Services) -> None:
    services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:22222222-2222-4222-8222-222222222222",
         "resource": {"resourceType": "Patient", "name": [{"family": "Other"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Device",
                      "identifier": [{"system": DEVICE_SYSTEM, "value": "OTHER-1"}],
                      "patient": {"reference": "urn:uuid:22222222-2222-4222-8222-222222222222"}},
         "request": {"method": "POST", "url": "Device"}}]})


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_shred_deletes_the_patients_raw_readings_at_once(database_url: str,
                                                         tmp_path: Path) -> None:
    services = open_services(database_url, tmp_path, "on")
    try:
        add_second_patient(services)
        pipeline = build_devices(services)
        pipeline.landing.land(readings()[:4])
        assert pipeline.materializer.drain() == 4  # materialized rows, kept for a while
        pipeline.landing.land(readings()[4:7])  # pending rows
        pipeline.landing.land([{"device": "OTHER-1", "kind": "spo2", "value": 97,
                                "time": TIMES[0]}])
        patient = pipeline.readings.pending(1)[0].patient
        other = pipeline.readings.pending(10)[-1].patient
        assert len(raw_rows(services, patient)) == 7
        report = shred(services.store.keyring, patient)  # type: ignore[attr-defined]
        assert report.readings == 7
        assert raw_rows(services, patient) == []
        assert len(raw_rows(services)) == 1  # the other patient's reading is kept
        assert pipeline.readings.latest(patient) == {}
        assert [r.patient for r in pipeline.readings.pending(10)] == [other]
        assert pipeline.materializer.drain() == 1
    finally:
        services.close()


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_sealed_readings_of_a_shredded_key_are_dropped_not_made(database_url: str,
                                                                tmp_path: Path) -> None:
    """Rows that come back after the shred (a copy restored from before it) cannot be opened:
    the materializer deletes them instead of making them."""
    services = open_services(database_url, tmp_path, "on")
    try:
        pipeline = build_devices(services)
        pipeline.landing.land(readings()[:3])
        patient = pipeline.readings.pending(1)[0].patient
        copy = raw_rows(services, patient)
        shred(services.store.keyring, patient)  # type: ignore[attr-defined]
        db = services.store.db  # type: ignore[attr-defined]
        with db.writing() as cur:
            cur.executemany(db.sql("INSERT INTO device_reading VALUES "
                                   f"({', '.join('?' * len(copy[0]))})"), copy)
        assert pipeline.readings.lag().pending == 3
        assert pipeline.readings.pending(100) == []
        assert pipeline.readings.lag().pending == 0
        assert pipeline.readings.latest(patient) == {}
    finally:
        services.close()
