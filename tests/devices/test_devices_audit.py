"""Device readings are audited (issue 4): one AuditEvent per landed batch (over MQTT as the
subscriber's), one per materializer transaction naming the patients of its Observations and
committed with them; a trail that refuses the event refuses the Observations too."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from device_helpers import observations, reading_time
from test_devices_mqtt import broker_up, publisher, wait_for
from typer.testing import CliRunner

from audit_down import ALLOW, REFUSE
from medarchive.app import Services, build_devices, build_services
from medarchive.cli.main import app
from medarchive.devices.audit import MATERIALIZER, subscriber_actor
from medarchive.devices.mqtt import DeviceSubscriber, MqttOptions
from medarchive.devices.pipeline import Pipeline
from medarchive.devices.readings import DEVICE_SYSTEM
from medarchive.settings import Settings


@pytest.fixture
def secured(database_url: str) -> Iterator[Services]:
    """Security on; two patients, each with a monitor (MON-A, MON-B)."""
    built = build_services(Settings(database_url=database_url, auth="on"))
    entries: list[dict[str, Any]] = []
    for name in ("A", "B"):
        full = f"urn:uuid:{uuid.uuid4()}"
        entries += [
            {"fullUrl": full, "resource": {"resourceType": "Patient",
                                           "name": [{"family": f"Bed {name}"}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Device",
                          "identifier": [{"system": DEVICE_SYSTEM, "value": f"MON-{name}"}],
                          "patient": {"reference": full}},
             "request": {"method": "POST", "url": "Device"}}]
    built.submit({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    yield built
    built.close()


@pytest.fixture
def devices(secured: Services) -> Pipeline:
    pipeline = build_devices(secured)
    pipeline.materializer.alerts = False  # its searches are audited on their own
    return pipeline


def readings(count: int, device: str = "MON-A", first: int = 0) -> list[dict[str, Any]]:
    return [{"device": device, "kind": "heart_rate", "value": 70, "time": reading_time(i)}
            for i in range(first, first + count)]


def events(services: Services) -> list[dict[str, Any]]:
    return [event for _, event in services.security.trail.events(0, 100_000)]


def by(services: Services, actor_id: str) -> list[dict[str, Any]]:
    return [e for e in events(services) if e["agent"][0]["who"]["identifier"]["value"]
            == actor_id]


def patients_of(event: dict[str, Any]) -> set[str]:
    return {item["what"]["reference"] for item in event.get("entity", ())
            if item.get("role", {}).get("code") == "1"}


def patients(services: Services) -> dict[str, str]:
    """Device identifier -> ``Patient/<id>`` it is assigned to."""
    found = {}
    for version in services.store.changes(0, 1000):
        if version.resource_type == "Device":
            device = version.resource()
            found[device["identifier"][0]["value"]] = device["patient"]["reference"]
    return found


def verified(services: Services) -> None:
    checked, problem = services.security.trail.verify()
    assert problem is None and checked > 0
    if getattr(services.store, "db", None) is not None:  # the command an auditor runs
        url = services.settings.database_url
        result = CliRunner().invoke(app, ["--database-url", url, "audit", "verify"])
        assert result.exit_code == 0, result.output


def test_each_materializer_transaction_is_one_event_naming_its_patients(
        secured: Services, devices: Pipeline) -> None:
    owners = patients(secured)
    devices.landing.land(readings(30, "MON-A") + readings(10, "MON-B"))
    devices.materializer.batch = 25
    assert devices.materializer.drain() == 40
    made = by(secured, MATERIALIZER.id)
    assert len(made) == 2  # 25 + 15: per transaction, not per Observation
    assert all(e["action"] == "C" and e["outcome"] == "0" for e in made)
    assert patients_of(made[0]) | patients_of(made[1]) == set(owners.values())
    assert patients_of(made[1]) <= set(owners.values())
    assert [e["outcomeDesc"].split(";")[0] for e in made] == [
        "device materializer: 25 Observations from device readings",
        "device materializer: 15 Observations from device readings"]
    verified(secured)


# the memory store's trail is written after the change (docs/security.md): SQL stores only
@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_no_event_no_observations_and_the_readings_wait(secured: Services,
                                                       devices: Pipeline) -> None:
    devices.landing.land(readings(20))
    trail = secured.security.trail
    dialect = trail.db.dialect
    with trail.db.writing() as cur:
        for statement in REFUSE[dialect]:
            cur.execute(statement)
    with pytest.raises(Exception, match="audit down"):
        devices.materializer.run_once()
    assert observations(secured) == []
    assert devices.readings.lag().pending == 20
    with trail.db.writing() as cur:
        for statement in ALLOW[dialect]:
            cur.execute(statement)
    assert devices.materializer.drain() == 20  # retried: nothing lost
    assert len(observations(secured)) == 20
    assert len(by(secured, MATERIALIZER.id)) == 1
    verified(secured)


def test_a_landed_batch_names_its_devices_and_patients(secured: Services,
                                                       devices: Pipeline) -> None:
    owners = patients(secured)
    actor = subscriber_actor("mqtt://user:secret@broker.example:1883", "ward/+/readings", "ward-7")
    devices.landing.land(readings(3, "MON-A") + readings(2, "MON-B") +
                         [{"device": "MON-A", "kind": "spo2", "value": 150,
                           "time": reading_time(0)}], actor)
    [event] = by(secured, actor.id)
    assert actor.id == "mqtt subscriber mqtt://broker.example:1883/ward/+/readings"
    assert "secret" not in orjson.dumps(event).decode()
    assert event["agent"][0]["network"]["address"] == "broker.example:1883"
    assert event["agent"][1]["who"]["identifier"]["value"] == "ward-7"
    assert patients_of(event) == set(owners.values())
    devices_named = {i["what"]["reference"] for i in event["entity"]
                     if i["what"]["reference"].startswith("Device/")}
    assert len(devices_named) == 2
    assert event["outcomeDesc"].startswith("device readings: 5 accepted (5 new), 1 refused")


def test_mqtt_batches_and_their_observations_are_audited(secured: Services,
                                                         devices: Pipeline) -> None:
    broker_up()
    owners = patients(secured)
    run = uuid.uuid4().hex[:8]
    url, topic = "mqtt://127.0.0.1:1883", f"test-{run}/devices/+/readings"
    actor = subscriber_actor(url, topic, f"medarchive-test-{run}")
    subscriber = DeviceSubscriber(
        MqttOptions(url, topic=topic, batch_size=50, batch_ms=100,
                    client_id=f"medarchive-test-{run}", clean_session=True),
        functools.partial(devices.landing.land, actor=actor))
    subscriber.start()
    sender = publisher(f"pub-{run}")
    try:
        for device in ("MON-A", "MON-B"):
            sender.publish(f"test-{run}/devices/{device}/readings",
                           orjson.dumps(readings(40, device)), qos=1).wait_for_publish(5)
        wait_for(lambda: subscriber.stored >= 80)
    finally:
        sender.loop_stop()
        sender.disconnect()
        subscriber.stop()
    landed = by(secured, actor.id)
    assert 1 <= len(landed) <= 2  # one per batch, not per reading
    accepted = sum(int(e["outcomeDesc"].split()[2]) for e in landed)
    assert accepted == 80
    assert set().union(*(patients_of(e) for e in landed)) == set(owners.values())
    assert devices.materializer.drain() == 80
    [made] = by(secured, MATERIALIZER.id)
    assert patients_of(made) == set(owners.values())
    verified(secured)

