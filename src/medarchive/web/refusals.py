"""AuditEvents for requests the HTTP edge refused (401 without a valid token, 429 rate limited),
aggregated so that an attacker cannot flood the audit trail.

Per server process and per minute of the clock: the **first** refusal of each (source address,
status) is recorded at once, as it happens; further ones from that address are only counted,
and when the minute has ended one **summary** event gives their number and the minute
(``AuditEvent.period``). At most ``max_addresses`` addresses are tracked a minute; refusals
from any further address are counted into one summary per status. So a minute costs at most
2 x ``max_addresses`` + 2 audit rows per process however many requests are refused.
Events: type Security Alert (DICOM 110113), subtype Use of Restricted Function (DICOM 110132),
outcome 4, the source address in ``agent.network``, the method and path (no query) in
``entity``. Summaries still open when the process stops are lost (at most one minute).
An event that cannot be written is logged at CRITICAL; the refusal stands either way.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool

from medarchive.security.actor import Actor
from medarchive.security.audit_events import DICOM, audit_event

log = logging.getLogger(__name__)

ALERT = {"system": DICOM, "code": "110113", "display": "Security Alert"}
RESTRICTED = {"system": DICOM, "code": "110132", "display": "Use of Restricted Function"}
REASONS = {401: "no valid access token", 429: "rate limit exceeded"}


@dataclass(slots=True)
class Tally:
    """Refusals of one (address, status) in the current minute."""

    who: str
    request: str
    count: int = 1


def refusal_event(address: str | None, status: int, who: str, request: str, when: datetime,
                  *, count: int = 1, period: tuple[datetime, datetime] | None = None
                  ) -> dict[str, Any]:
    """The AuditEvent (R4 §6.4) for ``count`` refused requests like ``request``."""
    kind, _, name = who.partition(":")
    actor = Actor(kind, name, "none", (), address=address) if name else \
        Actor("unknown", who, "none", (), address=address)
    detail = f"refused: {REASONS.get(status, 'refused')}"
    if period is not None:
        detail += f"; {count} requests refused in this period from this address"
    event = audit_event(actor, "operation", when, status=status, query=request, detail=detail)
    event["type"], event["subtype"] = dict(ALERT), [dict(RESTRICTED)]
    if period is not None:
        event["period"] = {"start": _instant(period[0]), "end": _instant(period[1])}
    return event


def _instant(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


class RefusalLog:
    """Aggregates refusals (see the module docstring); ``record`` appends one AuditEvent."""

    def __init__(self, record: Callable[[dict[str, Any]], object],
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 max_addresses: int = 100) -> None:
        self.record = record
        self.now = now
        self.max_addresses = max_addresses
        self._minute: int | None = None
        self._tallies: dict[tuple[str, int], Tally] = {}
        self._overflow: dict[int, int] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- the bookkeeping (synchronous, on the event loop) ---------------------------------

    def note(self, address: str | None, status: int, who: str, request: str
             ) -> list[dict[str, Any]]:
        """Count one refusal; the events to write now: a finished minute's summaries and
        this refusal when it is the first of its address and status this minute."""
        when = self.now()
        minute = int(when.timestamp()) // 60
        events = self._close() if minute != self._minute else []
        self._minute = minute
        key = (address or "unknown", status)
        tally = self._tallies.get(key)
        if tally is not None:
            tally.count += 1
        elif len(self._tallies) >= self.max_addresses:
            self._overflow[status] = self._overflow.get(status, 0) + 1
        else:
            self._tallies[key] = Tally(who, request)
            events.append(refusal_event(address, status, who, request, when))
        return events

    def due(self) -> list[dict[str, Any]]:
        """The summaries of the tracked minute once it has ended (else nothing)."""
        if self._minute is None or int(self.now().timestamp()) // 60 == self._minute:
            return []
        events = self._close()
        self._minute = None
        return events

    def _close(self) -> list[dict[str, Any]]:
        if self._minute is None:
            return []
        start = datetime.fromtimestamp(self._minute * 60, UTC)
        period = (start, start + timedelta(seconds=60))
        events = [refusal_event(address, status, tally.who, tally.request, self.now(),
                                count=tally.count, period=period)
                  for (address, status), tally in self._tallies.items() if tally.count > 1]
        events += [refusal_event(None, status, "anonymous", f"(addresses beyond the first "
                                 f"{self.max_addresses} this minute)", self.now(),
                                 count=count, period=period)
                   for status, count in self._overflow.items()]
        self._tallies, self._overflow = {}, {}
        return events

    # -- the asynchronous side: write in a worker thread, flush when the minute ends -------

    async def refused(self, address: str | None, status: int, who: str, request: str) -> None:
        """Note a refusal, write what is due and make sure the minute's summaries follow."""
        events = self.note(address, status, who, request)
        if events:
            await run_in_threadpool(self._write, events)
        self._arm()

    def _arm(self) -> None:
        """Wake up just after the tracked minute ends (once per minute, not per request)."""
        if self._timer is None and self._minute is not None:
            delay = 60 - self.now().timestamp() % 60 + 0.5
            self._timer = asyncio.get_running_loop().call_later(delay, self._wake)

    def _wake(self) -> None:
        self._timer = None
        task = asyncio.get_running_loop().create_task(self._flush())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self) -> None:
        events = self.due()
        if events:
            await run_in_threadpool(self._write, events)
        self._arm()  # a newer minute may have started meanwhile

    def _write(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            try:
                self.record(event)
            except Exception:
                log.critical("could not audit a refused request: %s", event.get("outcomeDesc"),
                             exc_info=True)
