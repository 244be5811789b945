"""NEWS2 alert delivery survives a restart: the Communication in the record is the outbox.

Each test writes an alert as a process that ran minutes ago (its repository clock set back)
and whose webhook was down, then starts new processes (fresh ``Services`` over the same
SQLite file or PostgreSQL schema, real clocks) against the real local HTTP server of
``test_devices_notify``."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from test_devices_notify import MEDIUM, Receiver, current, receiver, send

from medarchive.app import Services, build_devices, build_services
from medarchive.devices.alerts import check_patients
from medarchive.devices.notify import MqttTopic, Notifier, Webhook
from medarchive.devices.outbox import Outbox
from medarchive.settings import Settings

__all__ = ["receiver"]  # the fixture, shared with test_devices_notify


@pytest.fixture
def database_url(sql_url: str) -> str:
    """Processes share a database: SQL backends only (overrides the conftest fixture)."""
    return sql_url


@pytest.fixture
def process(database_url: str) -> Iterator[Any]:
    """Opens another server process's services over the test's database."""
    opened: list[Services] = []

    def open_process(**settings: Any) -> Services:
        opened.append(build_services(Settings(database_url=database_url, auth="off",
                                              **settings)))
        return opened[-1]

    yield open_process
    for services in opened:
        services.close()


def undelivered(services: Services, receiver: Receiver, minutes_ago: float) -> dict[str, Any]:
    """An alert raised ``minutes_ago`` by a process whose webhook answered 503 (one attempt):
    its Communication stays in the outbox. The receiver answers 200 afterwards."""
    real = services.repository.now
    services.repository.now = lambda: real() - timedelta(minutes=minutes_ago)
    receiver.status = 503
    notifier = Notifier([Webhook(receiver.url)], Outbox(services.router), attempts=1)
    try:
        patient = send(services, 0, MEDIUM)
        check_patients(services.router, [patient], services.repository.now().isoformat(),
                       notifier=notifier)
        notifier.wait()
    finally:
        notifier.close()
        services.repository.now = real
    assert len(receiver.bodies) == 1
    receiver.status = 200
    receiver.bodies.clear()
    [message] = current(services, "Communication")
    return message


def clock(minutes_ahead: float) -> Callable[[], datetime]:
    """A process clock ``minutes_ahead`` of the real one (a scan that much later)."""
    return lambda: datetime.now(UTC) + timedelta(minutes=minutes_ahead)


def notifier_of(services: Services, receiver: Receiver, **options: Any) -> Notifier:
    return Notifier([Webhook(receiver.url)], Outbox(services.router, **options), attempts=1)


def test_an_alert_not_delivered_is_sent_by_the_next_process_at_start(
        services: Services, receiver: Receiver, process: Any) -> None:
    """The webhook was down and the process stopped; a new one's pipeline, with the webhook
    up, sends the Communication when its materializer starts and marks it completed."""
    message = undelivered(services, receiver, minutes_ago=5)
    assert message["status"] == "in-progress"
    pipeline = build_devices(process(alert_webhook_url=receiver.url))
    pipeline.materializer.start()
    try:
        assert pipeline.materializer.notifier is not None
        pipeline.materializer.notifier.wait()  # the start scan
    finally:
        pipeline.close()
    [(_, body)] = receiver.bodies
    assert orjson.loads(body)["id"] == message["id"]
    [stored] = current(services, "Communication")
    assert stored["status"] == "completed"
    assert [n["text"] for n in stored["note"]] == [f"Delivered to {Webhook(receiver.url).name}"]


def test_two_processes_send_it_once(services: Services, receiver: Receiver,
                                    process: Any) -> None:
    """While the first process's claim is being sent (the receiver holds the POST), the
    second process's scan leaves it; a later scan finds it completed and sends nothing."""
    message = undelivered(services, receiver, minutes_ago=5)
    first = notifier_of(process(), receiver)
    second = notifier_of(process(), receiver)
    receiver.hold = True
    arrived = threading.Event()
    sending = threading.Thread(target=lambda: (first.scan(), arrived.set()))
    sending.start()
    try:
        while not receiver.bodies and sending.is_alive():
            sending.join(0.05)
        assert len(receiver.bodies) == 1
        assert second.scan() == 0
    finally:
        receiver.release.set()
        sending.join(30)
    assert arrived.is_set() and first.delivered == 1 and second.delivered == 0
    later = notifier_of(process(), receiver, now=clock(30))  # past any lease: not resent
    assert later.scan() == 0
    [(_, body)] = receiver.bodies
    assert orjson.loads(body)["id"] == message["id"]
    assert current(services, "Communication")[0]["status"] == "completed"


def test_a_claim_read_by_two_processes_goes_to_one(services: Services, receiver: Receiver,
                                                   process: Any) -> None:
    """Both read the same version; the conditional update (If-Match) lets one claim it."""
    undelivered(services, receiver, minutes_ago=5)
    first, second = Outbox(process().router), Outbox(process().router)
    [seen] = first.due(60)
    assert second.due(60) == [seen]
    assert first.claim(seen) is not None
    assert second.claim(seen) is None
    assert first.due(60) == []  # claimed a moment ago: left to its process


def test_an_alert_past_the_max_age_is_given_up(services: Services, receiver: Receiver,
                                               process: Any,
                                               caplog: pytest.LogCaptureFixture) -> None:
    message = undelivered(services, receiver, minutes_ago=300)  # 5 h, max age 4 h
    notifier = notifier_of(process(), receiver)
    with caplog.at_level(logging.ERROR, "medarchive.devices.outbox"):
        assert notifier.scan() == 0
    assert receiver.bodies == []
    [stored] = current(services, "Communication")
    assert stored["status"] == "stopped"
    assert "within 14400 s" in stored["statusReason"]["text"]
    assert stored["note"][-1]["text"] == stored["statusReason"]["text"]
    assert f"Communication/{message['id']}" in caplog.text and "given up" in caplog.text
    later = notifier_of(process(), receiver, now=clock(30))
    assert later.scan() == 0 and receiver.bodies == []


def test_a_channel_that_accepted_is_not_sent_it_again(services: Services, receiver: Receiver,
                                                      process: Any) -> None:
    """Webhook up, MQTT broker unreachable: the webhook's delivery is noted, the alert stays
    in the outbox for MQTT only."""
    undelivered(services, receiver, minutes_ago=5)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    for minutes in (0, 30):  # a scan now, another after the first one's lease
        notifier = Notifier(
            [Webhook(receiver.url), MqttTopic(f"mqtt://127.0.0.1:{port}", "ward", "alerts")],
            Outbox(process().router, now=clock(minutes)), attempts=1)
        assert notifier.scan() == 1
        notifier.close()
    assert len(receiver.bodies) == 1
    [stored] = current(services, "Communication")
    assert stored["status"] == "in-progress"
    texts = sorted(n["text"] for n in stored["note"])
    assert texts[0].startswith("Delivered to webhook")
    assert texts[1].startswith(f"Not delivered to mqtt 127.0.0.1:{port} ward: ")


def test_a_running_notifier_sends_it_when_the_channel_is_back(
        services: Services, receiver: Receiver, process: Any) -> None:
    """The start scan finds the webhook still down; a periodic scan sends it once it is up
    (``scan_s`` short and the clock ahead, so the notifier's own claims have expired)."""
    message = undelivered(services, receiver, minutes_ago=5)
    receiver.status = 503
    notifier = Notifier([Webhook(receiver.url)], Outbox(process().router, now=clock(30)),
                        attempts=1, scan_s=0.05)
    try:
        notifier.start()
        notifier.wait()
        assert notifier.failed >= 1 and notifier.delivered == 0
        receiver.status = 200
        for _ in range(600):  # bounded wait for the next scans, not a timing assertion
            if notifier.delivered:
                break
            threading.Event().wait(0.05)
    finally:
        notifier.close()
    assert notifier.delivered == 1
    [stored] = current(services, "Communication")
    assert stored["status"] == "completed" and stored["id"] == message["id"]
