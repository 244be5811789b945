"""The MQTT subscriber against the real broker at 127.0.0.1:1883 (skipped when it is down)."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from device_helpers import observations, reading_time

from medarchive.app import Services
from medarchive.devices.batch import BatchResult
from medarchive.devices.mqtt import DeviceSubscriber, MqttOptions
from medarchive.devices.pipeline import Pipeline

BROKER = ("127.0.0.1", 1883)


def broker_up() -> None:
    try:
        socket.create_connection(BROKER, timeout=1).close()
    except OSError as exc:
        reason = f"MQTT broker not reachable at {BROKER[0]}:{BROKER[1]}: {exc}"
        if os.environ.get("CI"):
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


def publisher(client_id: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    client.connect(*BROKER)
    client.loop_start()
    return client


def wait_for(condition: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_published_readings_are_landed_in_batches(services: Services,
                                                  pipeline: Pipeline) -> None:
    broker_up()
    run = uuid.uuid4().hex[:8]
    topic = f"test-{run}/devices/+/readings"
    subscriber = DeviceSubscriber(
        MqttOptions("mqtt://127.0.0.1:1883", topic=topic, batch_size=50, batch_ms=100,
                    client_id=f"medarchive-test-{run}", clean_session=True),
        pipeline.landing.land)
    subscriber.start()
    sender = publisher(f"pub-{run}")
    try:
        readings = [{"device": "MON-1", "kind": "heart_rate", "value": 60 + i,
                     "time": f"2024-05-01T12:{i:02d}:00Z"} for i in range(30)]
        for reading in readings[:20]:
            sender.publish(f"test-{run}/devices/MON-1/readings", orjson.dumps(reading),
                              qos=1).wait_for_publish(5)
        sender.publish(f"test-{run}/devices/MON-1/readings", orjson.dumps(readings[20:]),
                          qos=1).wait_for_publish(5)
        sender.publish(f"test-{run}/devices/MON-1/readings", b"not json",
                          qos=1).wait_for_publish(5)
        sender.publish(f"test-{run}/devices/MON-1/readings",
                          orjson.dumps({"device": "MON-1", "kind": "spo2", "value": 150,
                                        "time": "2024-05-01T12:00:00Z"}),
                          qos=1).wait_for_publish(5)
        wait_for(lambda: subscriber.stored + subscriber.refused >= 32)
    finally:
        sender.loop_stop()
        sender.disconnect()
        subscriber.stop()
    assert (subscriber.stored, subscriber.refused) == (30, 2)
    assert pipeline.readings.lag().pending == 30
    assert pipeline.materializer.drain() == 30
    assert len(observations(services)) == 30


def test_unacknowledged_readings_are_redelivered_and_landed_once(services: Services,
                                                                 pipeline: Pipeline) -> None:
    """A subscriber that dies before its batch is committed never acknowledges it: the broker
    redelivers to the next session, and readings delivered twice are held once."""
    broker_up()
    run = uuid.uuid4().hex[:8]
    options = MqttOptions("mqtt://127.0.0.1:1883", topic=f"test-{run}/devices/+/readings",
                          batch_ms=50, client_id=f"medarchive-redeliver-{run}")
    failed: list[int] = []

    def database_down(items: list[Any]) -> BatchResult:
        failed.append(len(items))
        raise OSError("database unreachable")

    first = DeviceSubscriber(options, database_down)
    first.start()
    sender = publisher(f"pub-{run}")
    readings = [{"device": "MON-1", "kind": "spo2", "value": 95, "time": reading_time(i)}
                for i in range(10)]
    try:
        for reading in readings:
            sender.publish(f"test-{run}/devices/MON-1/readings", orjson.dumps(reading),
                           qos=1).wait_for_publish(5)
        wait_for(lambda: sum(failed) == 10)
        first.stop()  # its session (with the unacknowledged messages) stays on the broker
        assert sum(failed) == 10 and pipeline.readings.lag().pending == 0
        second = DeviceSubscriber(options, pipeline.landing.land)
        second.start()
        sender.publish(f"test-{run}/devices/MON-1/readings", orjson.dumps(readings[:3]),
                       qos=1).wait_for_publish(5)  # a device resending: duplicates
        wait_for(lambda: second.stored >= 13)
        second.stop()
    finally:
        sender.loop_stop()
        sender.disconnect()
        cleanup = DeviceSubscriber(MqttOptions(options.url, topic=options.topic,
                                               client_id=options.client_id,
                                               clean_session=True), pipeline.landing.land)
        cleanup.start()  # a clean session drops what the broker kept for this client id
        cleanup.stop()
    assert second.stored == 13
    assert pipeline.readings.lag().pending == 10
    assert pipeline.materializer.drain() == 10
    assert len(observations(services)) == 10
