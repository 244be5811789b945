"""Access data kept per principal (user name, or client id): security-label entitlements,
attributes (``department``: Organization ids; ``practitioner``: the Practitioner id of the
person), break-the-glass grants and the alerts they raise (tables from migration 0007).

Everything an access decision needs about one principal is read at once (``profile``), in one
statement, and kept for ``PROFILE_TTL_S`` seconds (never past the expiry of a break-glass grant
in it): a client's next requests skip the read. Changes made through this object forget the
principal's profile at once; changes made by another process (``medarchive users ...``, another
server worker) are seen within ``PROFILE_TTL_S``. Writes here are administrative (CLI, the
break-glass endpoint); the decisions themselves are made in ``security.guard``.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from medarchive.errors import BadRequest
from medarchive.security.labels import check_label, effective
from medarchive.store.sql.database import Database

log = logging.getLogger(__name__)
ATTRIBUTES = ("department", "practitioner")
MIN_REASON = 20  # characters a break-glass reason needs at least
PROFILE_TTL_S = 1  # how long a profile read is reused (server clock, seconds)
MAX_PROFILES = 10_000  # cached principals; the cache starts afresh beyond that


@dataclass(frozen=True, slots=True)
class Profile:
    """What access decisions need to know about one principal at one moment."""

    entitled: frozenset[str] = frozenset()
    departments: tuple[str, ...] = ()
    practitioners: tuple[str, ...] = ()
    break_glass: frozenset[str] = frozenset()  # patients under an active grant


@dataclass(frozen=True, slots=True)
class BreakGlass:
    """One break-the-glass grant: ``principal`` may open ``patient_id``'s record until
    ``expires`` (Unix seconds) for the stated ``reason``."""

    id: str
    principal: str
    role: str
    patient_id: str
    reason: str
    granted: int
    expires: int
    address: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "user": self.principal, "role": self.role,
                "patient": self.patient_id, "reason": self.reason, "granted": self.granted,
                "expires": self.expires, "address": self.address}


@dataclass(frozen=True, slots=True)
class Alert:
    """Something auditors must look at (today: every break-the-glass grant)."""

    id: str
    kind: str
    principal: str
    patient_id: str | None
    detail: str
    created: int


@dataclass
class Access:
    """Reads and writes the access tables of ``db``; ``hooks`` are called with every new
    alert (e.g. to page a privacy officer); a failing hook is logged, never fatal."""

    db: Database
    now: Callable[[], datetime]
    hooks: list[Callable[[Alert], None]] = field(default_factory=list)
    _profiles: dict[str, tuple[float, Profile]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _time(self) -> int:
        return int(self.now().timestamp())

    def _forget(self, principal: str) -> None:
        with self._lock:
            self._profiles.pop(principal, None)

    # -- entitlements and attributes --------------------------------------------------------

    def entitle(self, principal: str, labels: Iterable[str]) -> None:
        """Entitle ``principal`` to see resources carrying ``labels``."""
        sql = self.db.sql
        with self.db.writing() as cur:
            for label in labels:
                check_label(label)
                cur.execute(sql("DELETE FROM sec_entitlement WHERE principal = ? AND label = ?"),
                            (principal, label))
                cur.execute(sql("INSERT INTO sec_entitlement (principal, label, granted) "
                                "VALUES (?, ?, ?)"), (principal, label, self._time()))
        self._forget(principal)

    def revoke(self, principal: str, labels: Iterable[str]) -> None:
        """Withdraw entitlements (unknown ones are ignored)."""
        with self.db.writing() as cur:
            for label in labels:
                cur.execute(self.db.sql("DELETE FROM sec_entitlement WHERE principal = ? AND "
                                        "label = ?"), (principal, label))
        self._forget(principal)

    def entitlements(self, principal: str) -> list[str]:
        with self.db.reading() as cur:
            cur.execute(self.db.sql("SELECT label FROM sec_entitlement WHERE principal = ? "
                                    "ORDER BY label"), (principal,))
            return [str(row[0]) for row in cur.fetchall()]

    def set_attribute(self, principal: str, name: str, values: Iterable[str]) -> None:
        """Replace the values of attribute ``name`` (``department`` or ``practitioner``)."""
        if name not in ATTRIBUTES:
            raise BadRequest(f"unknown attribute {name!r}; known: {', '.join(ATTRIBUTES)}")
        sql = self.db.sql
        with self.db.writing() as cur:
            cur.execute(sql("DELETE FROM sec_attribute WHERE principal = ? AND name = ?"),
                        (principal, name))
            cur.executemany(sql("INSERT INTO sec_attribute (principal, name, value) VALUES "
                                "(?, ?, ?)"), [(principal, name, v) for v in dict.fromkeys(values)])
        self._forget(principal)

    def attributes(self, principal: str) -> dict[str, list[str]]:
        with self.db.reading() as cur:
            cur.execute(self.db.sql("SELECT name, value FROM sec_attribute WHERE principal = ? "
                                    "ORDER BY name, value"), (principal,))
            found: dict[str, list[str]] = {}
            for name, value in cur.fetchall():
                found.setdefault(str(name), []).append(str(value))
            return found

    def profile(self, principal: str) -> Profile:
        """Entitlements, attributes and the patients of active break-glass grants (reused
        for ``PROFILE_TTL_S``, and never after a grant in it expires)."""
        now = self.now().timestamp()
        with self._lock:
            found = self._profiles.get(principal)
        if found is not None and now < found[0]:
            return found[1]
        with self.db.reading() as cur:  # one statement: one round trip
            cur.execute(self.db.sql(
                "SELECT 'label', label, 0 FROM sec_entitlement WHERE principal = ? UNION ALL "
                "SELECT name, value, 0 FROM sec_attribute WHERE principal = ? UNION ALL "
                "SELECT 'glass', patient_id, expires FROM sec_break_glass WHERE principal = ? "
                "AND expires > ?"), (principal, principal, principal, int(now)))
            rows = [(str(kind), str(value), int(ends)) for kind, value, ends in cur.fetchall()]
        profile = Profile(effective(v for k, v, _ in rows if k == "label"),
                          tuple(sorted(v for k, v, _ in rows if k == "department")),
                          tuple(sorted(v for k, v, _ in rows if k == "practitioner")),
                          frozenset(v for k, v, _ in rows if k == "glass"))
        until = min([now + PROFILE_TTL_S] + [ends for k, _, ends in rows if k == "glass"])
        with self._lock:
            if len(self._profiles) >= MAX_PROFILES:
                self._profiles.clear()
            self._profiles[principal] = (until, profile)
        return profile

    # -- break the glass --------------------------------------------------------------------

    def break_glass(self, principal: str, role: str, patient_id: str, reason: str,
                    minutes: int, address: str | None = None) -> BreakGlass:
        """Record a grant of ``minutes`` and its alert in one transaction; 400 without a
        stated reason of at least ``MIN_REASON`` characters."""
        reason = " ".join(reason.split())
        if len(reason) < MIN_REASON:
            raise BadRequest(f"break-the-glass needs a stated reason of at least {MIN_REASON} "
                             "characters")
        now = self._time()
        grant = BreakGlass("btg-" + secrets.token_hex(8), principal, role, patient_id,
                           reason[:1000], now, now + minutes * 60, address)
        alert = Alert("alert-" + secrets.token_hex(8), "break-glass", principal, patient_id,
                      f"{principal} ({role}) broke the glass on Patient/{patient_id} until "
                      f"{datetime.fromtimestamp(grant.expires, self.now().tzinfo).isoformat()}"
                      f": {grant.reason}", now)
        sql = self.db.sql
        with self.db.writing() as cur:
            cur.execute(sql("INSERT INTO sec_break_glass (id, principal, role, patient_id, "
                            "reason, granted, expires, address) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
                        (grant.id, principal, role, patient_id, grant.reason, now,
                         grant.expires, address))
            cur.execute(sql("INSERT INTO sec_alert (id, kind, principal, patient_id, detail, "
                            "created) VALUES (?, ?, ?, ?, ?, ?)"),
                        (alert.id, alert.kind, principal, patient_id, alert.detail, now))
        self._forget(principal)
        log.warning("BREAK-THE-GLASS: %s", alert.detail)
        for hook in self.hooks:
            try:
                hook(alert)
            except Exception:
                log.exception("break-the-glass alert hook failed")
        return grant

    def grants(self, *, active_only: bool = False, limit: int = 500) -> list[BreakGlass]:
        """Break-glass grants, newest first."""
        where = " WHERE expires > ?" if active_only else ""
        params: tuple[Any, ...] = (self._time(), limit) if active_only else (limit,)
        with self.db.reading() as cur:
            cur.execute(self.db.sql("SELECT id, principal, role, patient_id, reason, granted, "
                                    f"expires, address FROM sec_break_glass{where} ORDER BY "
                                    "granted DESC, id LIMIT ?"), params)
            return [BreakGlass(str(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]),
                               int(r[5]), int(r[6]), r[7]) for r in cur.fetchall()]

    def alerts(self, limit: int = 500) -> list[Alert]:
        """Alerts, newest first."""
        with self.db.reading() as cur:
            cur.execute(self.db.sql("SELECT id, kind, principal, patient_id, detail, created "
                                    "FROM sec_alert ORDER BY created DESC, id LIMIT ?"),
                        (limit,))
            return [Alert(str(r[0]), str(r[1]), str(r[2]), r[3], str(r[4]), int(r[5]))
                    for r in cur.fetchall()]

