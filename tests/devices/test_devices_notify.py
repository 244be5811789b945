"""NEWS2 alerts tell the care team: a Communication written with the Flag, addressed to the
patient's active CareTeam, and delivered after the commit to a real HTTP server and the real
MQTT broker (127.0.0.1:1883; skipped when it is down, failed under CI)."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from device_helpers import reading_time
from test_devices_mqtt import BROKER, broker_up

from medarchive.app import Services, build_devices
from medarchive.devices.alerts import HEADERS, check_patients
from medarchive.devices.batch import ingest_readings
from medarchive.devices.notify import MqttTopic, Notifier, Webhook, build_notifier
from medarchive.devices.outbox import Outbox
from medarchive.service.request import FhirRequest

NORMAL = {"heart_rate": 70, "respiratory_rate": 16, "spo2": 97, "temperature": 37}
MEDIUM = {**NORMAL, "heart_rate": 135, "respiratory_rate": 26}  # HR 3 + RR 3 = 6
HIGH = {**MEDIUM, "spo2": 90}  # + SpO2 3 = 9


def now() -> str:
    """The time of an alert raised now (older ones are past the outbox's max age)."""
    return datetime.now(UTC).isoformat()


def send(services: Services, minute: int, values: dict[str, float]) -> str:
    readings = [{"device": "MON-1", "kind": kind, "value": value,
                 "time": f"2024-05-01T12:{minute:02d}:00Z"} for kind, value in values.items()]
    result = ingest_readings(readings, services.router)
    assert result.refused == ()
    return str(result.observations[0]["subject"]["reference"])  # type: ignore[index]


def current(services: Services, rtype: str) -> list[dict[str, Any]]:
    latest: dict[str, dict[str, Any]] = {}
    for version in services.store.changes(0, 100_000):
        if version.resource_type == rtype:
            latest[version.id] = version.resource()
    return list(latest.values())


def create(services: Services, resource: dict[str, Any]) -> str:
    response = services.router.handle(FhirRequest(
        "POST", resource["resourceType"], body=orjson.dumps(resource), headers=HEADERS))
    assert response.status == 201, response.content()
    return f"{resource['resourceType']}/{orjson.loads(response.content())['id']}"


def the_patient(services: Services) -> str:
    return f"Patient/{current(services, 'Patient')[0]['id']}"


def add_care_team(services: Services, patient: str) -> list[str]:
    """An active CareTeam (a nurse, a ward, a relative, the patient, a doctor on shift until
    the end of the alert's day, a doctor who left) and an inactive one; returns whom an alert
    should tell: the active team and its current members but the patient."""
    nurse = create(services, {"resourceType": "Practitioner", "name": [{"family": "Nurse"}]})
    doctor = create(services, {"resourceType": "Practitioner", "name": [{"family": "Gone"}]})
    ward = create(services, {"resourceType": "Organization", "name": "Ward 7"})
    today = create(services, {"resourceType": "Practitioner", "name": [{"family": "Shift"}]})
    relative = create(services, {"resourceType": "RelatedPerson",
                                 "patient": {"reference": patient}})
    team = create(services, {"resourceType": "CareTeam", "status": "active",
                             "subject": {"reference": patient}, "participant": [
                                 {"member": {"reference": nurse}},
                                 {"member": {"reference": ward}},
                                 {"member": {"reference": relative}},
                                 {"member": {"reference": patient}},
                                 {"member": {"reference": today},
                                  "period": {"end": "2024-05-01"}},
                                 {"member": {"reference": doctor},
                                  "period": {"end": "2024-04-30T00:00:00Z"}}]})
    old = create(services, {"resourceType": "Practitioner", "name": [{"family": "Old"}]})
    create(services, {"resourceType": "CareTeam", "status": "inactive",
                      "subject": {"reference": patient},
                      "participant": [{"member": {"reference": old}}]})
    return [team, nurse, ward, relative, today]


@dataclass
class Receiver:
    """A real HTTP server on a free local port recording the POSTs it answers ``status`` to;
    with ``hold`` set, each request waits for ``release`` before it is answered."""

    status: int = 200
    hold: bool = False
    bodies: list[tuple[str, bytes]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    answered: threading.Event = field(default_factory=threading.Event)
    url: str = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            found.bodies.append((str(self.headers["content-type"]), body))
            if found.hold:
                found.release.wait(30)
            self.send_response(found.status)
            self.send_header("content-length", "0")
            self.end_headers()
            found.answered.set()

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    found.url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield found
    found.release.set()
    server.shutdown()
    server.server_close()


def test_an_alert_tells_the_active_care_team(services: Services) -> None:
    patient = the_patient(services)
    members = add_care_team(services, patient)
    send(services, 0, NORMAL)
    send(services, 1, MEDIUM)
    [(_, news)] = check_patients(services.router, [patient], "2024-05-01T12:01:30+00:00")
    assert news.risk == "medium"
    [flag] = current(services, "Flag")
    [message] = current(services, "Communication")
    assert message["status"] == "completed"
    assert message["category"][0]["coding"][0]["code"] == "alert"
    assert message["priority"] == "asap"  # RCP "urgent response threshold"
    assert message["subject"] == {"reference": patient}
    assert message["sent"] == "2024-05-01T12:01:30+00:00"
    about = [a["reference"] for a in message["about"]]
    assert about[0] == f"Flag/{flag['id']}"
    assert len(about) == 5 and all(a.startswith("Observation/") for a in about[1:])
    assert sorted(r["reference"] for r in message["recipient"]) == sorted(members)
    text = message["payload"][0]["contentString"]
    assert "NEWS2 6 (medium risk)" in text and "heart_rate 135 /min" in text
    assert "no active CareTeam" not in text


def test_a_patient_without_care_team_gets_an_unaddressed_communication(
        services: Services, caplog: pytest.LogCaptureFixture) -> None:
    patient = send(services, 0, HIGH)
    with caplog.at_level(logging.WARNING, "medarchive.devices.alerts"):
        check_patients(services.router, [patient], "2024-05-01T12:00:30+00:00")
    [message] = current(services, "Communication")
    assert "recipient" not in message and message["priority"] == "stat"
    assert "no active CareTeam" in message["payload"][0]["contentString"]
    assert f"Communication/{message['id']} is addressed to no one" in caplog.text


def test_only_a_rise_tells_the_care_team(services: Services) -> None:
    """Medium, high, back to medium (Flag updated, no one told), low (Flag closed), medium
    again (told): a notification per threshold crossed upwards, not per reading."""
    patient = the_patient(services)
    add_care_team(services, patient)
    notifier = Notifier([], Outbox(services.router))
    risks = []
    for minute, values in enumerate((MEDIUM, HIGH, HIGH, MEDIUM, NORMAL, NORMAL, MEDIUM)):
        send(services, minute, values)
        raised = check_patients(services.router, [patient], f"2024-05-01T12:{minute:02d}:30Z",
                                notifier=notifier)
        risks.append([news.risk for _, news in raised])
    assert risks == [["medium"], ["high"], [], ["medium"], [], [], ["medium"]]
    priorities = [m["priority"] for m in current(services, "Communication")]
    assert priorities == ["asap", "stat", "asap"]
    assert [f["status"] for f in current(services, "Flag")] == \
        ["inactive", "inactive", "inactive", "active"]


def test_low_medium_rising_to_medium_is_a_new_alert(services: Services) -> None:
    """The active Flag's risk is read from "(R risk)": "medium" inside "low-medium" is not
    the same level."""
    patient = send(services, 0, {**NORMAL, "heart_rate": 135})
    [(_, news)] = check_patients(services.router, [patient], "2024-05-01T12:00:30Z")
    assert news.risk == "low-medium"
    send(services, 1, MEDIUM)
    [(_, news)] = check_patients(services.router, [patient], "2024-05-01T12:01:30Z")
    assert news.risk == "medium"
    assert [m["priority"] for m in current(services, "Communication")] == ["urgent", "asap"]


def test_the_webhook_receives_the_stored_communication(services: Services,
                                                       receiver: Receiver) -> None:
    patient = send(services, 0, MEDIUM)
    notifier = Notifier([Webhook(receiver.url)], Outbox(services.router))
    try:
        check_patients(services.router, [patient], now(), notifier=notifier)
        notifier.wait()
    finally:
        notifier.close()
    [message] = current(services, "Communication")
    [(kind, body)] = receiver.bodies
    assert kind == "application/fhir+json"
    sent = orjson.loads(body)
    assert (sent["resourceType"], sent["id"]) == ("Communication", message["id"])
    assert notifier.delivered == 1 and notifier.failed == 0
    assert message["status"] == "completed"  # out of the outbox
    assert [n["text"] for n in message["note"]] == [f"Delivered to {notifier.channels[0].name}"]


def test_a_failing_webhook_neither_blocks_nor_loses_the_alert(
        services: Services, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    receiver.status, receiver.hold = 503, True
    patient = send(services, 0, MEDIUM)
    notifier = Notifier([Webhook(receiver.url)], Outbox(services.router), attempts=3,
                        backoff_s=0)
    try:
        with caplog.at_level(logging.WARNING, "medarchive.devices.notify"):
            check_patients(services.router, [patient], now(), notifier=notifier)
            assert not receiver.answered.is_set()  # returned while the channel hangs
            assert len(current(services, "Flag")) == 1
            assert len(current(services, "Communication")) == 1
            receiver.release.set()
            notifier.wait()
    finally:
        notifier.close()
    assert len(receiver.bodies) == 3 and notifier.failed == 1
    assert "failed after 3 attempts: HTTPError: HTTP Error 503" in caplog.text
    [message] = current(services, "Communication")
    [note] = message["note"]
    assert note["text"].startswith("Not delivered to webhook 127.0.0.1:")
    assert message["status"] == "in-progress"  # still in the outbox: a later scan sends it


def test_the_materializer_delivers_to_the_configured_webhook(services: Services,
                                                             receiver: Receiver) -> None:
    """Wiring: ``alert_webhook_url`` reaches the pipeline's materializer, which delivers
    after its alert pass committed."""
    services.settings = replace(services.settings, alert_webhook_url=receiver.url)
    pipeline = build_devices(services)
    assert pipeline.landing.land([
        {"device": "MON-1", "kind": kind, "value": value, "time": reading_time(0)}
        for kind, value in MEDIUM.items()]).stored == 4
    assert pipeline.materializer.run_once().alerts == 1
    assert pipeline.materializer.notifier is not None
    pipeline.materializer.notifier.wait()
    pipeline.close()
    [(_, body)] = receiver.bodies
    assert orjson.loads(body)["id"] == current(services, "Communication")[0]["id"]


def test_settings_name_the_channels(services: Services) -> None:
    settings = replace(services.settings, alert_webhook_url="http://127.0.0.1:9/a",
                       alert_mqtt_topic="ward/alerts", mqtt_url="mqtt://127.0.0.1:1883")
    assert [c.name for c in build_notifier(settings, services.router).channels] == \
        ["webhook 127.0.0.1:9", "mqtt 127.0.0.1:1883 ward/alerts"]
    with pytest.raises(ValueError, match="needs mqtt_url"):
        build_notifier(replace(settings, mqtt_url=""), services.router)
    with pytest.raises(ValueError, match="http"):
        Webhook("file:///etc/passwd")




def test_the_mqtt_topic_receives_the_stored_communication(services: Services) -> None:
    broker_up()
    run = uuid.uuid4().hex[:8]
    topic = f"test-{run}/alerts"
    got: list[bytes] = []
    arrived = threading.Event()
    subscribed = threading.Event()
    listener = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"listen-{run}")
    listener.on_connect = lambda client, *args: client.subscribe(topic, qos=1)
    listener.on_subscribe = lambda *args: subscribed.set()
    listener.on_message = lambda client, data, message: (got.append(message.payload),
                                                         arrived.set())
    listener.connect(*BROKER)
    listener.loop_start()
    notifier = Notifier([MqttTopic("mqtt://127.0.0.1:1883", topic, f"alerts-{run}")],
                        Outbox(services.router))
    try:
        assert subscribed.wait(10)
        patient = send(services, 0, HIGH)
        check_patients(services.router, [patient], now(), notifier=notifier)
        notifier.wait()
        assert notifier.delivered == 1
        assert arrived.wait(10)
    finally:
        notifier.close()
        listener.disconnect()
        listener.loop_stop()
    [message] = current(services, "Communication")
    sent = orjson.loads(got[0])
    assert (sent["id"], sent["priority"]) == (message["id"], "stat")
