"""The MQTT subscriber for device readings (paho-mqtt 2.1), batching them into transactions.

Monitors and wearable hubs publish readings (one JSON reading or a JSON list) to
``medarchive/devices/{device}/readings``. The subscriber receives with QoS 1 and *manual*
acknowledgement: a PUBACK is sent only after the batch holding the message was committed (or
its readings refused and logged), so a crash makes the broker redeliver instead of losing
readings, and redelivered readings are not stored twice (their Observation identifier is the
reading's identity). Messages are collected for at most ``batch_ms`` or ``batch_size`` readings,
or until none arrived for ``idle_ms`` (the broker sends only so many unacknowledged messages —
Mosquitto's ``max_inflight_messages``, 20 by default — so waiting longer gains nothing), then
handed to ``ingest`` in one call: the landing (``devices.landing``), one insert per batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import orjson
import paho.mqtt.client as mqtt

from medarchive.devices.batch import BatchResult

log = logging.getLogger(__name__)
DEFAULT_TOPIC = "medarchive/devices/+/readings"


@dataclass(frozen=True)
class MqttOptions:
    """``url``: mqtt://host:port (docs/settings.md mqtt_url); batching limits; ``connections``
    sessions sharing the subscription (``$share/{share_group}/{topic}``, MQTT 5 §4.8.2, which
    Mosquitto also grants to 3.1.1 clients), each with its own window of unacknowledged
    messages, so more readings are in flight while a batch commits."""

    url: str
    topic: str = DEFAULT_TOPIC
    batch_size: int = 500
    batch_ms: int = 200
    idle_ms: int = 2
    client_id: str = "medarchive-devices"
    clean_session: bool = False  # False: the broker keeps unacknowledged readings for us
    connections: int = 1
    share_group: str = "medarchive"


class DeviceSubscriber:
    """Subscribes to device readings and hands them in batches to ``ingest`` (a callable taking
    a list of readings, e.g. ``landing.land``); acknowledges them once it returned."""

    def __init__(self, options: MqttOptions,
                 ingest: Callable[[list[Any]], BatchResult]) -> None:
        self.options = options
        self.ingest = ingest
        self.received = 0
        self.stored = 0
        self.refused = 0
        self._queue: queue.Queue[tuple[mqtt.Client, mqtt.MQTTMessage]] = queue.Queue()
        self._stop = threading.Event()
        self._subscribed = threading.Semaphore(0)
        self._worker = threading.Thread(target=self._drain, name="mqtt-batch", daemon=True)
        self.clients = [self._client(number) for number in range(max(options.connections, 1))]

    def _client(self, number: int) -> mqtt.Client:
        client_id = self.options.client_id if self.options.connections <= 1 else \
            f"{self.options.client_id}-{number}"
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             clean_session=self.options.clean_session, manual_ack=True)
        client.on_connect = self._on_connect
        client.on_subscribe = lambda *args: self._subscribed.release()
        client.on_message = lambda client, userdata, message: self._queue.put((client, message))
        return client

    @property
    def topic(self) -> str:
        if self.options.connections <= 1:
            return self.options.topic
        return f"$share/{self.options.share_group}/{self.options.topic}"

    def start(self, timeout: float = 10.0) -> None:
        """Connect, subscribe and start batching; raises TimeoutError if the broker does not
        confirm the subscriptions in ``timeout`` seconds."""
        parsed = urlparse(self.options.url)
        if parsed.scheme not in ("mqtt", "tcp"):
            raise ValueError(f"mqtt_url must be mqtt://host:port, not {self.options.url!r}")
        self._worker.start()
        deadline = time.monotonic() + timeout
        for client in self.clients:
            if parsed.username:
                client.username_pw_set(parsed.username, parsed.password)
            client.connect(parsed.hostname or "127.0.0.1", parsed.port or 1883, keepalive=30)
            client.loop_start()
        for _ in self.clients:
            if not self._subscribed.acquire(timeout=max(0.0, deadline - time.monotonic())):
                self.stop()
                raise TimeoutError(f"no subscription confirmed by {self.options.url}")

    def stop(self) -> None:
        self._stop.set()
        self._worker.join(10)
        for client in self.clients:
            client.disconnect()
            client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        client.subscribe(self.topic, qos=1)

    def _drain(self) -> None:
        while not self._stop.is_set() or not self._queue.empty():
            try:
                first = self._queue.get(timeout=0.05)
            except queue.Empty:
                continue
            batch = [first]
            deadline = time.monotonic() + self.options.batch_ms / 1000
            while len(batch) < self.options.batch_size:
                remaining = min(deadline - time.monotonic(), self.options.idle_ms / 1000)
                if remaining <= 0:
                    break
                try:
                    batch.append(self._queue.get(timeout=remaining))
                except queue.Empty:
                    break
            self._apply(batch)

    def _apply(self, messages: list[tuple[mqtt.Client, mqtt.MQTTMessage]]) -> None:
        items: list[Any] = []
        for _, message in messages:
            try:
                payload = orjson.loads(message.payload)
            except orjson.JSONDecodeError:
                log.warning("MQTT message on %s is not JSON; refused", message.topic)
                self.refused += 1
                continue
            items.extend(payload if isinstance(payload, list) else [payload])
        self.received += len(items)
        try:
            result = self.ingest(items)
        except Exception:  # leave unacknowledged: the broker redelivers after a reconnect
            log.exception("device batch of %d readings failed", len(items))
            return
        self.stored += result.stored
        self.refused += len(result.refused)
        for client, message in messages:
            if message.qos > 0:
                client.ack(message.mid, message.qos)
