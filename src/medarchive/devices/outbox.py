"""The record as the delivery queue of NEWS2 alerts (transactional outbox).

An alert's Communication is committed with its Flag (``devices.alerts``) before anything is
sent, so a process that stops between the commit and the delivery must not lose the alert.
The Communication itself says whether it still has to go out, in FHIR terms (R4 value set
event-status): ``in-progress`` from the commit until every configured channel accepted it,
then ``completed``; ``stopped`` with a ``statusReason`` when it was given up after
``max_age_s`` (the record was made and addressed, its delivery ended before completion).
Each channel's latest outcome is a ``note`` ("Delivered to ..." or "Not delivered to ...:
error"), one per channel, so a channel that accepted it is not sent it again when another
channel is retried. Every change goes through the service path as the system (validated,
audited, versioned).

Several server processes share the database: a process *claims* a Communication before
sending it with a conditional update (R4 §3.1.0.5, If-Match on the version it read; the
claim is the new version, its ``meta.lastUpdated`` the time of the claim). Another process
that read the same version gets 412 and leaves it; one that sees a version written less than
the lease ago leaves it too (its writer or claimant may still be at work; the lease is the
longest one delivery can take, ``Notifier.lease_s``). A claimant that dies
mid-send leaves it ``in-progress``; once the lease has run out the next scan claims and sends it
again: delivery is at least once, a receiver may see a Communication id twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from medarchive.devices.news2 import COMMUNICATION_CATEGORY
from medarchive.fhir.search.parse import parse_search
from medarchive.service.request import FhirRequest

log = logging.getLogger(__name__)
HEADERS = {"content-type": "application/fhir+json", "accept": "application/fhir+json"}
TOPIC = ("urn:medarchive:alert", "news2")  # Communication.topic of a NEWS2 alert
SCAN = 100  # undelivered Communications read per scan (newest first)
DELIVERED = "Delivered to "
NOT_DELIVERED = "Not delivered to "
UPDATES = 5  # read-modify-write tries of an outcome against concurrent claims


def _instant(text: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _version(resource: Mapping[str, Any]) -> int:
    return int(resource.get("meta", {}).get("versionId", 0))


def _busy(resource: Mapping[str, Any], now: datetime, lease_s: float) -> bool:
    written = _instant(resource.get("meta", {}).get("lastUpdated"))
    return written is not None and (now - written).total_seconds() < lease_s


def is_news2(resource: Mapping[str, Any]) -> bool:
    """Whether ``resource`` is a NEWS2 alert Communication (its topic)."""
    return any((c.get("system"), c.get("code")) == TOPIC
               for c in resource.get("topic", {}).get("coding", ()))


def delivered_to(resource: Mapping[str, Any]) -> set[str]:
    """The channels whose latest outcome noted on ``resource`` is a delivery."""
    return {str(note["text"])[len(DELIVERED):] for note in resource.get("note", ())
            if str(note.get("text", "")).startswith(DELIVERED)}


def _channel_of(note: Mapping[str, Any]) -> str | None:
    text = str(note.get("text", ""))
    if text.startswith(DELIVERED):
        return text[len(DELIVERED):]
    if text.startswith(NOT_DELIVERED):
        return text[len(NOT_DELIVERED):].partition(": ")[0]
    return None


class Outbox:
    """Undelivered NEWS2 Communications in the store of ``router``: found (``due``), claimed
    (``claim``), settled (``settle``) or given up (``expire``), all as the system; ``now`` is
    the clock (default the repository's)."""

    def __init__(self, router: Any, *, max_age_s: float = 4 * 3600,
                 now: Callable[[], datetime] | None = None) -> None:
        self.router = router
        self.max_age_s = max_age_s
        self.now = now or router.repository.now

    def due(self, lease_s: float) -> list[dict[str, Any]]:
        """The in-progress NEWS2 alert Communications no process is at (last written over
        ``lease_s`` ago: by then its writer or claimant has finished or died): of the ``SCAN``
        most recently sent, oldest first (``Communication?category=...|alert&status=
        in-progress&_sort=-sent``, one indexed search read from the store as the system)."""
        parsed = parse_search(self.router.spec, "Communication", [
            ("category", f"{COMMUNICATION_CATEGORY}|alert"), ("status", "in-progress"),
            ("_sort", "-sent")], default_count=SCAN, max_count=SCAN)
        now = self.now()
        found = [v.resource() for v in self.router.repository.store.search(parsed.query)]
        idle = [c for c in found if is_news2(c) and not _busy(c, now, lease_s)]
        return sorted(idle, key=lambda c: _instant(c.get("sent")) or now)

    def expired(self, resource: Mapping[str, Any]) -> bool:
        """Whether ``resource`` was sent more than ``max_age_s`` ago (by ``sent``)."""
        sent = _instant(resource.get("sent")) or _instant(
            resource.get("meta", {}).get("lastUpdated"))
        return sent is not None and (self.now() - sent).total_seconds() > self.max_age_s

    def read(self, id: str) -> dict[str, Any] | None:
        """The current Communication ``id``; None when it is gone."""
        response = self.router.handle(FhirRequest("GET", f"Communication/{id}",
                                                  headers=HEADERS))
        return orjson.loads(response.content()) if response.status == 200 else None

    def _put(self, resource: dict[str, Any], version: int) -> dict[str, Any] | None:
        """Update if the current version is still ``version``; the new version, or None
        when another writer came first (412)."""
        path = f"Communication/{resource['id']}"
        response = self.router.handle(FhirRequest(
            "PUT", path, body=orjson.dumps(resource),
            headers={**HEADERS, "if-match": f'W/"{version}"',
                     "prefer": "return=representation"}))
        if response.status == 412:
            return None
        if response.status >= 300:
            raise OSError(f"PUT {path}: HTTP {response.status} {response.content()!r}")
        return dict(orjson.loads(response.content()))

    def claim(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        """Take ``resource`` (as read) for delivery: the claimed version, or None when it is
        no longer in progress or another process changed it since it was read."""
        if resource.get("status") != "in-progress":
            return None
        return self._put(resource, _version(resource))

    def _change(self, claimed: dict[str, Any],
                edit: Callable[[dict[str, Any]], dict[str, Any] | None]) -> dict[str, Any] | None:
        """Apply ``edit`` to the current version (first the claimed one) while it is in
        progress, again on a fresh read when another process wrote in between."""
        current: dict[str, Any] | None = claimed
        for _ in range(UPDATES):
            if current is None or current.get("status") != "in-progress":
                return None
            changed = edit(current)
            if changed is None:
                return None
            written = self._put(changed, _version(current))
            if written is not None:
                return written
            current = self.read(str(claimed["id"]))
        raise OSError(f"Communication/{claimed['id']} kept changing; outcome not recorded")

    def settle(self, claimed: dict[str, Any], outcomes: Mapping[str, str],
               channels: Iterable[str]) -> dict[str, Any] | None:
        """Record each channel's outcome (``outcomes``: channel name -> "" when delivered,
        else the error) as its note, and set ``completed`` once every one of ``channels``
        has a delivery noted."""
        when = self.now().isoformat()
        names = list(channels)

        def edit(current: dict[str, Any]) -> dict[str, Any]:
            notes = [n for n in current.get("note", ()) if _channel_of(n) not in outcomes]
            for channel, error in outcomes.items():
                text = f"{DELIVERED}{channel}" if not error else \
                    f"{NOT_DELIVERED}{channel}: {error}"
                notes.append({"time": when, "text": text})
            changed = {**current, "note": notes}
            if set(names) <= delivered_to(changed):
                changed["status"] = "completed"
            return changed

        return self._change(claimed, edit)

    def expire(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        """Give ``resource`` up: ``stopped``, with the reason as ``statusReason`` and note,
        logged as an error; None when another process settled it first."""
        reason = (f"not delivered to every alert channel within {self.max_age_s:g} s of "
                  f"being sent; delivery given up")

        def edit(current: dict[str, Any]) -> dict[str, Any]:
            return {**current, "status": "stopped", "statusReason": {"text": reason},
                    "note": [*current.get("note", ()),
                             {"time": self.now().isoformat(), "text": reason}]}

        written = self._change(resource, edit)
        if written is not None:
            log.error("NEWS2 alert Communication/%s (sent %s, %s) %s", resource["id"],
                      resource.get("sent"), resource.get("priority"), reason)
        return written
