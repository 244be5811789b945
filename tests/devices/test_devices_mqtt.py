"""The MQTT subscriber against the real broker at 127.0.0.1:1883 (skipped when it is down)."""

from __future__ import annotations

import os
import socket
import time
import uuid

import orjson
import paho.mqtt.client as mqtt
import pytest

from medarchive.app import Services
from medarchive.devices.batch import ingest_readings
from medarchive.devices.mqtt import DeviceSubscriber, MqttOptions

BROKER = ("127.0.0.1", 1883)


def broker_up() -> None:
    try:
        socket.create_connection(BROKER, timeout=1).close()
    except OSError as exc:
        reason = f"MQTT broker not reachable at {BROKER[0]}:{BROKER[1]}: {exc}"
        if os.environ.get("CI"):
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


def observation_count(services: Services) -> int:
    return sum(v.resource_type == "Observation" for v in services.store.changes(0, 100_000))


def test_published_readings_are_stored_in_batches(services: Services) -> None:
    broker_up()
    run = uuid.uuid4().hex[:8]
    topic = f"test-{run}/devices/+/readings"
    subscriber = DeviceSubscriber(
        MqttOptions("mqtt://127.0.0.1:1883", topic=topic, batch_size=50, batch_ms=100,
                    client_id=f"medarchive-test-{run}", clean_session=True),
        lambda items: ingest_readings(items, services.router))
    subscriber.start()
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{run}")
    publisher.connect(*BROKER)
    publisher.loop_start()
    try:
        readings = [{"device": "MON-1", "kind": "heart_rate", "value": 60 + i,
                     "time": f"2024-05-01T12:{i:02d}:00Z"} for i in range(30)]
        for reading in readings[:20]:
            publisher.publish(f"test-{run}/devices/MON-1/readings", orjson.dumps(reading),
                              qos=1).wait_for_publish(5)
        publisher.publish(f"test-{run}/devices/MON-1/readings", orjson.dumps(readings[20:]),
                          qos=1).wait_for_publish(5)
        publisher.publish(f"test-{run}/devices/MON-1/readings", b"not json",
                          qos=1).wait_for_publish(5)
        publisher.publish(f"test-{run}/devices/MON-1/readings",
                          orjson.dumps({"device": "MON-1", "kind": "spo2", "value": 150,
                                        "time": "2024-05-01T12:00:00Z"}),
                          qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 15
        while subscriber.stored + subscriber.refused < 32 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        publisher.loop_stop()
        publisher.disconnect()
        subscriber.stop()
    assert (subscriber.stored, subscriber.refused) == (30, 2)
    assert observation_count(services) == 30
