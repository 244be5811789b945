"""What the interaction being audited has done so far: patients touched, and whether its
AuditEvent already went into the database with its write.

``Guard.run`` opens one ``Pending`` per interaction (a context variable, so batch entries that
re-enter the router get their own and the outer one comes back afterwards). The search path
reports the versions it returns (``touched``), so a search's AuditEvent names every patient
whose data was in the result. A write goes through ``write``: on a SQL store sharing the
trail's database the interaction's AuditEvent is appended inside the write's own transaction
(``SqlStore.write(after=...)``), so the change and its audit commit together or not at all;
``Guard.run`` then does not record it again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any

import orjson

from medarchive.security.actor import Actor, current_actor
from medarchive.security.audit import AuditTrail, settle_deferred
from medarchive.security.audit_events import audit_event
from medarchive.security.authz import patient_refs
from medarchive.store.base import Change, Version


@dataclass
class Pending:
    """The audit state of one interaction in progress."""

    actor: Actor
    name: str
    patients: set[str] = field(default_factory=set)
    recorded: bool = False  # its AuditEvent was committed with its write


_PENDING: ContextVar[Pending | None] = ContextVar("medarchive_audit_pending", default=None)


def start(actor: Actor, name: str) -> tuple[Pending, Token[Pending | None]]:
    """Track the interaction ``name`` by ``actor`` until ``stop``."""
    pending = Pending(actor, name)
    return pending, _PENDING.set(pending)


def stop(token: Token[Pending | None]) -> None:
    """End the tracking ``start`` began (the enclosing interaction's comes back)."""
    _PENDING.reset(token)


@contextmanager
def interaction(actor: Actor, name: str) -> Iterator[Pending]:
    """Track the interaction ``name`` by ``actor`` for the duration of the block."""
    pending, token = start(actor, name)
    try:
        yield pending
    finally:
        stop(token)


def current_name() -> str | None:
    """The name of the interaction being audited (``read``, ``vread``, ``history``...)."""
    pending = _PENDING.get()
    return None if pending is None else pending.name


def patients_of(version: Version | None) -> set[str]:
    """The patients a stored version is about (its compartment, as ``authz`` reads it)."""
    if version is None or version.deleted or not version.body:
        return set()
    if version.resource_type == "Patient":
        return {version.id}
    try:
        resource = orjson.loads(version.body)
    except orjson.JSONDecodeError:
        return set()
    return patient_refs(resource) if isinstance(resource, dict) else set()


def touched(versions: Iterable[Version]) -> None:
    """Note the patients whose data the current interaction returns."""
    pending = _PENDING.get()
    if pending is not None:
        for version in versions:
            pending.patients |= patients_of(version)


def _changed_patients(store: Any, changes: Sequence[Change]) -> set[str]:
    found: set[str] = set()
    for change in changes:
        if change.resource is not None:
            found |= patient_refs(change.resource)
        elif change.resource_type == "Patient":
            found.add(change.id)
        else:  # a deletion: the patient of the version it removes
            try:
                found |= patients_of(store.read(change.resource_type, change.id))
            except Exception:  # an erased or unreadable version names no patient
                continue
    return found


def write(trail: AuditTrail, store: Any, changes: Sequence[Change],
          idempotency_key: str | None,
          mark: Callable[[dict[str, Any]], Any] | None = None) -> list[Version]:
    """``store.write`` with the current interaction's AuditEvent in the same transaction when
    the store writes to the trail's own database; otherwise a plain write (audited after).
    ``mark`` amends the event as ``Guard.run`` would (break-the-glass purpose and label)."""
    pending = _PENDING.get()
    if pending is None or pending.recorded or getattr(store, "db", None) is not trail.db:
        return list(store.write(changes, idempotency_key=idempotency_key))
    patients = _changed_patients(store, changes)
    pending.patients |= patients
    created = all(c.expected_version == 0 and not c.deleted for c in changes)
    status = 201 if created and pending.name in ("create", "update") else 200
    entities = [] if pending.name in ("batch", "transaction") else \
        [f"{c.resource_type}/{c.id}" for c in changes]

    def after(cur: Any, versions: list[Version]) -> None:
        event = audit_event(pending.actor, pending.name, trail.now(), status=status,
                            entities=entities, patients=patients)
        if mark is not None:
            mark(event)
        trail.append(cur, [event])
    settle_deferred()  # earlier entries' events first: the trail keeps processing order
    versions = list(store.write(changes, idempotency_key=idempotency_key, after=after))
    pending.recorded = True
    return versions


def audited(submit: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """``submit`` (``Services.submit``) made an audited interaction of the bound actor, for
    what arrives other than over HTTP (HL7 v2 messages): each call is one ``transaction``
    whose AuditEvent commits with its writes (``write``), or not at all."""
    def run(bundle: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        with interaction(current_actor(), "transaction"):
            return submit(bundle, idempotency_key)
    return run
