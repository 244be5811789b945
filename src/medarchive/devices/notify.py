"""Delivery of NEWS2 alert Communications to the systems that reach the care team.

The Communication (``devices.alerts``) is already in the record, committed with its Flag; this
module hands it, after the commit, to outbound channels so a pager gateway or the ward's
dashboard receives it: an HTTP webhook (``alert_webhook_url``: POST of the Communication as
``application/fhir+json``) and an MQTT topic (``alert_mqtt_topic`` on the ``mqtt_url`` broker
the device subscriber uses; QoS 1, paho-mqtt as in ``devices.mqtt``). A ``Notifier`` queues the
Communications and sends them from its own thread, so the materializer never waits for a
channel; each channel is tried ``attempts`` times (each with a ``timeout_s`` timeout, waiting
1, 2, 4... times ``backoff_s`` between tries). A channel that still fails is logged as an
error and recorded on the Communication itself (a ``note`` saying which channel failed and
why, written through the service path as the system), where the ward and an audit find it.
Delivery is at least once and in memory: a Communication queued when the process stops is in
the record but not re-sent.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, Protocol
from urllib.parse import urlparse

import orjson
import paho.mqtt.client as mqtt

from medarchive.service.request import FhirRequest

log = logging.getLogger(__name__)
QUEUE_SIZE = 1000  # Communications waiting for delivery; more are logged and not sent
FHIR_JSON = "application/fhir+json"


class Channel(Protocol):
    """Where a Communication goes; ``send`` raises when it did not arrive."""

    name: str

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
    """Sends queued Communications to ``channels`` from a thread of its own (started at the
    first ``deliver``); ``on_failure(communication, channel name, error text)`` records a
    channel that failed every attempt."""

    def __init__(self, channels: Sequence[Channel], *, attempts: int = 3,
                 backoff_s: float = 1.0,
                 on_failure: Callable[[dict[str, Any], str, str], None] | None = None) -> None:
        self.channels = list(channels)
        self.attempts = max(attempts, 1)
        self.backoff_s = backoff_s
        self.on_failure = on_failure
        self.delivered = 0
        self.failed = 0
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(QUEUE_SIZE)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def deliver(self, communication: dict[str, Any]) -> None:
        """Queue ``communication`` (stored already) for every channel; never waits."""
        if not self.channels:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="alert-delivery",
                                                daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait(communication)
        except queue.Full:
            log.error("alert delivery queue full: Communication/%s is stored but not sent",
                      communication.get("id"))

    def wait(self) -> None:
        """Until every queued Communication was sent or given up (for tests and shutdown)."""
        self._queue.join()

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (one attempt each from now on; waiting at most ``timeout`` s),
        stop, and close the channels."""
        if self._thread is not None:
            self._stop.set()  # no more waiting between attempts
            with contextlib.suppress(queue.Full):
                self._queue.put(None, timeout=timeout)
            self._thread.join(timeout)
        for channel in self.channels:
            channel.close()

    def _run(self) -> None:
        while True:
            communication = self._queue.get()
            try:
                if communication is None:
                    return
                body = orjson.dumps(communication)
                for channel in self.channels:
                    self._send(channel, communication, body)
            finally:
                self._queue.task_done()

    def _send(self, channel: Channel, communication: dict[str, Any], body: bytes) -> None:
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
            return
        self.failed += 1
        log.error("alert delivery of Communication/%s to %s failed after %d attempts: %s",
                  communication.get("id"), channel.name, self.attempts, error)
        if self.on_failure is not None:
            try:
                self.on_failure(communication, channel.name, error)
            except Exception:
                log.exception("could not record the failed delivery of Communication/%s",
                              communication.get("id"))


def note_failure(router: Any) -> Callable[[dict[str, Any], str, str], None]:
    """An ``on_failure`` that adds a note (R4 Communication.note) to the stored
    Communication, through ``router`` as the system: read, append, update."""
    headers = {"content-type": FHIR_JSON, "accept": FHIR_JSON}

    def record(communication: dict[str, Any], channel: str, error: str) -> None:
        path = f"Communication/{communication['id']}"
        response = router.handle(FhirRequest("GET", path, headers=headers))
        if response.status != 200:
            raise OSError(f"GET {path}: HTTP {response.status}")
        current = orjson.loads(response.content())
        note = {"time": router.repository.now().isoformat(),
                "text": f"Not delivered to {channel}: {error}"}
        current["note"] = [*current.get("note", ()), note]
        response = router.handle(FhirRequest("PUT", path, body=orjson.dumps(current),
                                             headers=headers))
        if response.status >= 300:
            raise OSError(f"PUT {path}: HTTP {response.status}")

    return record


def build_notifier(settings: Any, router: Any) -> Notifier:
    """The channels ``settings`` name (none: a Notifier that sends nothing), recording
    failures on the Communication through ``router``."""
    channels: list[Channel] = []
    if settings.alert_webhook_url:
        channels.append(Webhook(settings.alert_webhook_url))
    if settings.alert_mqtt_topic:
        if not settings.mqtt_url:
            raise ValueError("alert_mqtt_topic needs mqtt_url (the broker to publish to)")
        channels.append(MqttTopic(settings.mqtt_url, settings.alert_mqtt_topic,
                                  f"{settings.mqtt_client_id}-alerts"))
    return Notifier(channels, attempts=settings.alert_delivery_attempts,
                    on_failure=note_failure(router))
