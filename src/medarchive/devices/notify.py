"""Delivery of NEWS2 alert Communications to the systems that reach the care team.

The Communication (``devices.alerts``) is already in the record, committed with its Flag
(``in-progress`` while it still has to go out); this module hands it, after the commit, to
outbound channels so a pager gateway or the ward's dashboard receives it: an HTTP webhook
(``alert_webhook_url``: POST of the Communication as ``application/fhir+json``) and an MQTT
topic (``alert_mqtt_topic`` on the ``mqtt_url`` broker the device subscriber uses; QoS 1,
paho-mqtt as in ``devices.mqtt``). A ``Notifier`` sends from its own thread, so the
materializer never waits for a channel; each channel is tried ``attempts`` times (each with a
``timeout_s`` timeout, waiting 1, 2, 4... times ``backoff_s`` between tries). The record is the
queue (``devices.outbox``): each Communication is claimed before it is sent and its outcome
written back (``completed`` when every channel accepted it; a channel that still fails is
logged as an error and noted on the Communication, which stays ``in-progress``). At start and
every ``scan_s`` seconds the Notifier sends what the record says is undelivered (a process
stopped before sending it, or a channel was down), until ``max_age_s`` after it was sent.
Delivery is at least once.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import urlparse

import orjson
import paho.mqtt.client as mqtt

from medarchive.devices.outbox import Outbox, delivered_to

log = logging.getLogger(__name__)
QUEUE_SIZE = 1000  # Communications waiting for delivery; more are logged and not sent
FHIR_JSON = "application/fhir+json"
SCAN = "scan"  # queued by start: scan the outbox first


class Channel(Protocol):
    """Where a Communication goes; ``send`` raises when it did not arrive."""

    name: str
    timeout_s: float

    def send(self, body: bytes) -> None: ...

    def close(self) -> None: ...


class Webhook:
    """HTTP POST of the Communication to ``url`` (http or https); a 2xx answer is delivery."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        if urlparse(url).scheme not in ("http", "https"):
            raise ValueError(f"alert_webhook_url must be http(s)://..., not {url!r}")
        self.url = url
        self.timeout_s = timeout_s
        self.name = f"webhook {urlparse(url).netloc}"

    def send(self, body: bytes) -> None:
        request = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"content-type": FHIR_JSON})
        with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
            response.read()
            if not 200 <= response.status < 300:
                raise OSError(f"HTTP {response.status} from {self.url}")

    def close(self) -> None:
        return None


class MqttTopic:
    """Publishes the Communication to ``topic`` on the broker at ``url`` (mqtt://host:port)
    with QoS 1; delivery is the broker's PUBACK. Connects at the first send and again after a
    failure."""

    def __init__(self, url: str, topic: str, client_id: str, timeout_s: float = 5.0) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("mqtt", "tcp"):
            raise ValueError(f"mqtt_url must be mqtt://host:port for alert_mqtt_topic, "
                             f"not {url!r}")
        self.parsed = parsed
        self.topic = topic
        self.client_id = client_id
        self.timeout_s = timeout_s
        self.name = f"mqtt {parsed.hostname}:{parsed.port or 1883} {topic}"
        self._client: mqtt.Client | None = None

    def _connect(self) -> mqtt.Client:
        if self._client is not None:
            return self._client
        connected = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id)
        client.on_connect = lambda *args: connected.set()
        if self.parsed.username:
            client.username_pw_set(self.parsed.username, self.parsed.password)
        client.connect(self.parsed.hostname or "127.0.0.1", self.parsed.port or 1883,
                       keepalive=30)
        client.loop_start()
        self._client = client
        if not connected.wait(self.timeout_s):
            self.close()
            raise TimeoutError(f"no CONNACK from {self.name}")
        return client

    def send(self, body: bytes) -> None:
        try:
            info = self._connect().publish(self.topic, body, qos=1)
            info.wait_for_publish(self.timeout_s)
            if not info.is_published():
                raise TimeoutError(f"no PUBACK from {self.name} in {self.timeout_s} s")
        except Exception:
            self.close()  # a fresh session next time: nothing queued in the old one is re-sent
            raise

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()


class Notifier:
    """Sends NEWS2 alert Communications to ``channels`` from a thread of its own, taking them
    through ``outbox`` (``devices.outbox``): those handed over after their commit
    (``deliver``) and, from ``start`` on, every ``scan_s`` seconds those the record says are
    still undelivered (written by a process that stopped, or failed here before)."""

    def __init__(self, channels: Sequence[Channel], outbox: Outbox, *, attempts: int = 3,
                 backoff_s: float = 1.0, scan_s: float = 60.0) -> None:
        self.channels = list(channels)
        self.outbox = outbox
        self.attempts = max(attempts, 1)
        self.backoff_s = backoff_s
        self.scan_s = scan_s
        self.delivered = 0
        self.failed = 0
        self._queue: queue.Queue[dict[str, Any] | str | None] = queue.Queue(QUEUE_SIZE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def lease_s(self) -> float:
        """How long one delivery may take (every attempt timing out, with the waits between,
        plus a margin): a claim younger than this is left to its process."""
        waits = self.backoff_s * (2 ** (self.attempts - 1) - 1)
        tries = sum(2 * channel.timeout_s for channel in self.channels) * self.attempts
        return 30.0 + tries + waits * len(self.channels)

    def start(self) -> None:
        """Run the delivery thread, which first scans the outbox (when there are channels)."""
        if self._begin():
            self._queue.put(SCAN)

    def _begin(self) -> bool:
        if not self.channels:
            return False
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="alert-delivery",
                                                daemon=True)
                self._thread.start()
        return True

    def deliver(self, communication: dict[str, Any]) -> None:
        """Queue ``communication`` (just committed) for every channel; never waits. One not
        queued (the queue is full) stays in the outbox for a later scan."""
        if not self._begin():
            return
        try:
            self._queue.put_nowait(communication)
        except queue.Full:
            log.error("alert delivery queue full: Communication/%s is stored and left to the "
                      "next outbox scan", communication.get("id"))

    def wait(self) -> None:
        """Until everything queued (the start scan included) was handled (tests, shutdown)."""
        self._queue.join()

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (one attempt each from now on; waiting at most ``timeout`` s),
        stop, and close the channels; what is left stays in the outbox."""
        if self._thread is not None:
            self._stop.set()  # no more waiting between attempts, no more scans
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=timeout)
            self._thread.join(timeout)
        for channel in self.channels:
            channel.close()

    def _run(self) -> None:
        next_scan = time.monotonic() + self.scan_s
        while True:
            try:
                item = self._queue.get(timeout=max(next_scan - time.monotonic(), 0))
            except queue.Empty:
                self._guarded(self.scan)
                next_scan = time.monotonic() + self.scan_s
                continue
            try:
                if item is None:
                    return
                if item == SCAN:
                    self._guarded(self.scan)
                    next_scan = time.monotonic() + self.scan_s
                elif isinstance(item, dict):
                    self._guarded(self._handle, item)
            finally:
                self._queue.task_done()

    def _guarded(self, work: Callable[..., Any], *args: Any) -> None:
        try:
            work(*args)
        except Exception:  # the store or the service path failed: the outbox keeps it
            log.exception("alert delivery failed; undelivered Communications stay in the "
                          "outbox for the next scan")

    def scan(self) -> int:
        """Send the undelivered Communications of the outbox, oldest ``sent`` first, giving
        up those older than its ``max_age_s``; returns how many were settled here."""
        settled = 0
        for communication in self.outbox.due(self.lease_s()):
            if self._stop.is_set():
                break
            settled += self._take(communication)
        return settled

    def _handle(self, written: dict[str, Any]) -> None:
        """A Communication handed over at its commit: sent unless another process took it
        or changed it since (then the outbox has it)."""
        current = self.outbox.read(str(written["id"]))
        if current is not None and \
                current.get("meta", {}).get("versionId") == written["meta"]["versionId"]:
            self._take(current)

    def _take(self, communication: dict[str, Any]) -> int:
        if self.outbox.expired(communication):
            self.outbox.expire(communication)
            return 0
        claimed = self.outbox.claim(communication)
        if claimed is None:
            return 0  # another process has it
        body = orjson.dumps(claimed)
        done = delivered_to(claimed)
        outcomes = {channel.name: self._send(channel, claimed, body)
                    for channel in self.channels if channel.name not in done}
        self.outbox.settle(claimed, outcomes, [channel.name for channel in self.channels])
        return 1

    def _send(self, channel: Channel, communication: dict[str, Any], body: bytes) -> str:
        """Try ``channel`` up to ``attempts`` times; "" when it accepted, else the error."""
        error = ""
        for attempt in range(self.attempts):
            if attempt:
                self._stop.wait(self.backoff_s * 2 ** (attempt - 1))
            try:
                channel.send(body)
            except Exception as exc:  # any failure of the channel: retry, then record
                error = f"{type(exc).__name__}: {exc}"
                log.warning("alert delivery of Communication/%s to %s failed (attempt %d/%d):"
                            " %s", communication.get("id"), channel.name, attempt + 1,
                            self.attempts, error)
                continue
            self.delivered += 1
            return ""
        self.failed += 1
        log.error("alert delivery of Communication/%s to %s failed after %d attempts: %s; "
                  "it stays in the outbox", communication.get("id"), channel.name,
                  self.attempts, error)
        return error


def build_notifier(settings: Any, router: Any) -> Notifier:
    """The channels ``settings`` name (none: a Notifier that sends nothing), with the outbox
    in the store of ``router``."""
    channels: list[Channel] = []
    if settings.alert_webhook_url:
        channels.append(Webhook(settings.alert_webhook_url))
    if settings.alert_mqtt_topic:
        if not settings.mqtt_url:
            raise ValueError("alert_mqtt_topic needs mqtt_url (the broker to publish to)")
        channels.append(MqttTopic(settings.mqtt_url, settings.alert_mqtt_topic,
                                  f"{settings.mqtt_client_id}-alerts"))
    return Notifier(channels, Outbox(router, max_age_s=settings.alert_delivery_max_age_s),
                    attempts=settings.alert_delivery_attempts,
                    scan_s=settings.alert_delivery_scan_s)
