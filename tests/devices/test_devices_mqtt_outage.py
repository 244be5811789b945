"""The MQTT subscriber when the broker is down, restarts, or speaks TLS: it keeps retrying
with back-off and logs it, and configuration errors are refused before anything starts. The
broker is the real Mosquitto at 127.0.0.1:1883, reached through ``BrokerProxy``."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
import pytest
from broker_proxy import BrokerProxy
from device_helpers import reading_time
from test_devices_mqtt import BROKER, broker_up, publisher, wait_for
from typer.testing import CliRunner

from medarchive.cli.main import app
from medarchive.devices.mqtt import (
    DeviceSubscriber,
    MqttOptions,
    broker_address,
    redact,
    tls_context,
)
from medarchive.devices.pipeline import Pipeline
from medarchive.web.tls import server_context


def publish(sender: mqtt.Client, topic: str, first: int, count: int) -> None:
    for i in range(first, first + count):
        reading = {"device": "MON-1", "kind": "heart_rate", "value": 60 + i % 40,
                   "time": reading_time(i)}
        sender.publish(topic, orjson.dumps(reading), qos=1).wait_for_publish(5)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_broker_down_at_start_and_restarted_later_loses_nothing(
        pipeline: Pipeline, caplog: pytest.LogCaptureFixture) -> None:
    broker_up()
    run = uuid.uuid4().hex[:8]
    topic = f"test-{run}/devices/MON-1/readings"
    proxy = BrokerProxy(BROKER)  # down: nothing listens on its port yet
    subscriber = DeviceSubscriber(MqttOptions(
        f"mqtt://127.0.0.1:{proxy.port}", topic=f"test-{run}/devices/+/readings",
        batch_ms=50, client_id=f"medarchive-outage-{run}", reconnect_min_s=1,
        reconnect_max_s=2), pipeline.landing.land)
    sender = publisher(f"pub-{run}")
    caplog.set_level(logging.WARNING, logger="medarchive.devices.mqtt")
    try:
        assert subscriber.start(timeout=0.5) is False  # no exception, no subscription yet
        assert "not reachable; retrying" in caplog.text
        proxy.up()
        wait_for(lambda: subscriber.connections == 1)
        assert "reachable again" in caplog.text
        wait_for(lambda: subscriber._subscribed.acquire(blocking=False))
        publish(sender, topic, 0, 10)
        wait_for(lambda: subscriber.stored == 10)
        proxy.down()  # the broker restarts: connections cut, the port closed for a while
        publish(sender, topic, 10, 10)  # kept by the broker for the persistent session
        wait_for(lambda: "connection to" in caplog.text)
        proxy.up()
        wait_for(lambda: pipeline.readings.lag().pending == 20)
    finally:
        sender.loop_stop()
        sender.disconnect()
        subscriber.stop()
        proxy.down()
        cleanup = DeviceSubscriber(MqttOptions(f"mqtt://{BROKER[0]}:{BROKER[1]}",
                                               topic=f"test-{run}/devices/+/readings",
                                               client_id=f"medarchive-outage-{run}",
                                               clean_session=True), pipeline.landing.land)
        cleanup.start()  # drop the persistent session kept for this client id
        cleanup.stop()
    assert subscriber.connections >= 2
    assert pipeline.readings.lag().pending == 20  # each reading once (redeliveries held once)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
# paho 2.1 leaves the socket of a failed TLS handshake to the garbage collector
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_mqtts_verifies_the_broker_against_the_configured_ca(pipeline: Pipeline,
                                                             tmp_path: Path) -> None:
    broker_up()
    made = CliRunner().invoke(app, ["certs", "dev", "--out", str(tmp_path)])
    assert made.exit_code == 0, made.output
    proxy = BrokerProxy(BROKER, tls=server_context(str(tmp_path / "server.pem"),
                                                   str(tmp_path / "server-key.pem")))
    proxy.up()
    run = uuid.uuid4().hex[:8]
    options = MqttOptions(f"mqtts://127.0.0.1:{proxy.port}",
                          topic=f"test-{run}/devices/+/readings", batch_ms=50,
                          client_id=f"medarchive-tls-{run}", clean_session=True,
                          tls_ca=str(tmp_path / "ca.pem"))
    subscriber = DeviceSubscriber(options, pipeline.landing.land)
    sender = publisher(f"pub-{run}")
    try:
        assert subscriber.start() is True
        publish(sender, f"test-{run}/devices/MON-1/readings", 0, 5)
        wait_for(lambda: subscriber.stored == 5)
        # the system's CAs do not know the development CA: never subscribed
        untrusted = DeviceSubscriber(MqttOptions(
            options.url, topic=options.topic, client_id=f"medarchive-tls2-{run}",
            clean_session=True), pipeline.landing.land)
        assert untrusted.start(timeout=1) is False
        untrusted.stop()
    finally:
        sender.loop_stop()
        sender.disconnect()
        subscriber.stop()
        proxy.down()
    assert subscriber.stored == 5


@pytest.mark.parametrize(("url", "words"), [
    ("ws://127.0.0.1:9001", "must be mqtt://host:port or mqtts://"),
    ("mqtt://127.0.0.1:port", "port is not a number"),
    ("mqtt://:1883", "names no host"),
])
def test_urls_that_cannot_work_are_refused(url: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        broker_address(url)


def test_addresses_passwords_and_ca_files() -> None:
    assert broker_address("mqtts://u:p@broker.example") == ("broker.example", 8883, True, "u",
                                                            "p")
    assert broker_address("mqtt://broker.example")[1:3] == (1883, False)
    assert redact("mqtt://u:secret@h:1883") == "mqtt://u:***@h:1883"
    with pytest.raises(ValueError, match="mqtt_tls_ca"):
        tls_context("/nonexistent/ca.pem")
