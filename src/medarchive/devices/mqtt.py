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

A broker that is down when the subscriber starts, or restarts later, is an operational event,
not a configuration error: each session connects in paho's network thread and keeps retrying
with exponential back-off (``reconnect_min_s`` doubling up to ``reconnect_max_s``), logging the
outage once and the reconnection; the persistent session (``clean_session`` False) keeps what
was published meanwhile, and ``on_connect`` subscribes again on every connection. A URL of
another scheme, or an unreadable CA file, is a configuration error (``ValueError`` from
``broker_address`` / ``tls_context``, before anything starts). ``mqtts://`` connects with TLS
1.2+ and verifies the broker's certificate and host name against ``tls_ca`` (default: the
system's CAs).
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlparse

import orjson
import paho.mqtt.client as mqtt

from medarchive.devices.batch import BatchResult

log = logging.getLogger(__name__)
DEFAULT_TOPIC = "medarchive/devices/+/readings"
_SCHEMES = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True}


class Broker(NamedTuple):
    """Where ``mqtt_url`` points: host, port, TLS or not, credentials (None when absent)."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None


def broker_address(url: str) -> Broker:
    """Read ``mqtt://[user:password@]host[:port]`` (1883) or ``mqtts://...`` (TLS, 8883);
    raises ValueError, naming the problem, for any other URL."""
    parsed = urlparse(url)
    if parsed.scheme not in _SCHEMES:
        raise ValueError(f"mqtt_url must be mqtt://host:port or mqtts://host:port (TLS), not "
                         f"{redact(url)!r}")
    try:
        port = parsed.port
    except ValueError:
        raise ValueError(f"mqtt_url {redact(url)!r}: the port is not a number") from None
    if not parsed.hostname:
        raise ValueError(f"mqtt_url {redact(url)!r} names no host")
    tls = _SCHEMES[parsed.scheme]
    return Broker(parsed.hostname, port or (8883 if tls else 1883), tls, parsed.username,
                  parsed.password)


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    return parsed._replace(netloc=parsed.netloc.replace(f":{parsed.password}@", ":***@")
                           ).geturl()


def tls_context(ca_file: str) -> ssl.SSLContext:
    """The client context of ``mqtts://``: TLS 1.2 or later, the broker's certificate and host
    name verified against ``ca_file`` (PEM), or the system's CAs when empty; raises
    ValueError when the file cannot be read."""
    try:
        context = ssl.create_default_context(cafile=ca_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"mqtt_tls_ca {ca_file!r}: {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@dataclass(frozen=True)
class MqttOptions:
    """``url``: mqtt://host:port or mqtts://host:port (docs/settings.md mqtt_url), ``tls_ca``
    its CA file (mqtt_tls_ca); batching limits; ``connections`` sessions sharing the
    subscription (``$share/{share_group}/{topic}``, MQTT 5 §4.8.2, which Mosquitto also grants
    to 3.1.1 clients), each with its own window of unacknowledged messages, so more readings
    are in flight while a batch commits; the reconnection back-off, in seconds."""

    url: str
    topic: str = DEFAULT_TOPIC
    batch_size: int = 500
    batch_ms: int = 200
    idle_ms: int = 2
    client_id: str = "medarchive-devices"
    clean_session: bool = False  # False: the broker keeps unacknowledged readings for us
    connections: int = 1
    share_group: str = "medarchive"
    tls_ca: str = ""
    reconnect_min_s: int = 1
    reconnect_max_s: int = 60


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
        self.connections = 0  # successful connections, reconnections included
        self._stop = threading.Event()
        self._subscribed = threading.Semaphore(0)
        self._down: set[int] = set()  # ids of the clients whose outage was logged
        self._worker = threading.Thread(target=self._drain, name="mqtt-batch", daemon=True)
        self.clients = [self._client(number) for number in range(max(options.connections, 1))]

    def _client(self, number: int) -> mqtt.Client:
        client_id = self.options.client_id if self.options.connections <= 1 else \
            f"{self.options.client_id}-{number}"
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             clean_session=self.options.clean_session, manual_ack=True)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = lambda *args: self._subscribed.release()
        client.reconnect_delay_set(self.options.reconnect_min_s, self.options.reconnect_max_s)
        client.on_message = lambda client, userdata, message: self._queue.put((client, message))
        return client

    @property
    def topic(self) -> str:
        if self.options.connections <= 1:
            return self.options.topic
        return f"$share/{self.options.share_group}/{self.options.topic}"

    def start(self, timeout: float = 10.0) -> bool:
        """Start connecting (in the background, retrying while the broker is down), and
        batching; wait up to ``timeout`` seconds for the broker to confirm every subscription.
        Returns whether it did: False means the sessions keep retrying (logged). Raises
        ValueError for a URL or CA file that cannot work (``broker_address``,
        ``tls_context``)."""
        broker = broker_address(self.options.url)
        if self.options.tls_ca and not broker.tls:
            raise ValueError("mqtt_tls_ca is set but mqtt_url is not mqtts://")
        context = tls_context(self.options.tls_ca) if broker.tls else None
        self._worker.start()
        deadline = time.monotonic() + timeout
        for client in self.clients:
            if broker.username:
                client.username_pw_set(broker.username, broker.password)
            if context is not None:
                client.tls_set_context(context)
            client.connect_async(broker.host, broker.port, keepalive=30)
            client.loop_start()
        for _ in self.clients:
            if not self._subscribed.acquire(timeout=max(0.0, deadline - time.monotonic())):
                log.warning("MQTT broker %s has not confirmed the subscription within %.0f s; "
                            "retrying in the background", redact(self.options.url), timeout)
                return False
        return True

    def stop(self) -> None:
        self._stop.set()
        self._worker.join(10)
        for client in self.clients:
            client.disconnect()
            client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:  # e.g. bad credentials: paho retries, the operator must act
            log.error("MQTT broker %s refused the connection: %s", redact(self.options.url),
                      reason)
            return
        self.connections += 1
        if id(client) in self._down:
            self._down.discard(id(client))
            log.warning("MQTT broker %s reachable again; subscribing",
                        redact(self.options.url))
        client.subscribe(self.topic, qos=1)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        if id(client) not in self._down and not self._stop.is_set():
            self._down.add(id(client))
            log.warning("MQTT broker %s not reachable; retrying with back-off up to %d s",
                        redact(self.options.url), self.options.reconnect_max_s)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        if not self._stop.is_set() and id(client) not in self._down:
            self._down.add(id(client))
            log.warning("MQTT connection to %s lost (%s); reconnecting with back-off up to "
                        "%d s", redact(self.options.url), reason, self.options.reconnect_max_s)

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
