"""The HL7 v2 gateway: one framed message in, one acknowledgement out, nothing lost.

Transport-neutral (the MLLP server calls ``handle`` from a worker thread): parse → map → submit
the transaction Bundle through the same service path as the REST API, with the idempotency key
``hl7:{sending facility}|{sending application}|{MSH-10}`` so a redelivered message is
acknowledged without being applied twice. AA is built only after the store committed; a crash
before that leaves the sender without an ACK, so it retries. Messages for one patient are applied
in order (a lock per patient identifier); every message is written to the message log with its
outcome, and refused ones become dead letters that can be fixed and replayed.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from medarchive.errors import AlreadyApplied, FhirError
from medarchive.hl7v2 import (
    Hl7Error,
    Hl7ParseError,
    MappingConfig,
    Message,
    ack_wanted,
    build_ack,
    build_nak_for_unparseable,
    map_message,
    parse_message,
)
from medarchive.mllp.log import LogEntry, MessageLog

log = logging.getLogger(__name__)
_ENHANCED = {"AA": "CA", "AE": "CE", "AR": "CR"}


def new_control_id() -> str:
    """MSH-10 of our ACKs: unique per acknowledgement (HL7 v2.8 §2.14.9.10)."""
    return uuid.uuid4().hex[:20]


def message_key(message: Message) -> str:
    """The idempotency key of a message: sender and control id (HL7 v2.8 §2.10.1 duplicates)."""
    return f"hl7:{message.sending_facility}|{message.sending_app}|{message.control_id}"


@dataclass(frozen=True)
class Outcome:
    """What the gateway did: the ACK to send (None when the sender asked for none) and the log
    entry id."""

    code: str
    ack: str | None
    log_id: int
    duplicate: bool = False


class PatientLocks:
    """One lock per patient key, so two connections cannot reorder a patient's messages."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def lock(self, key: str) -> threading.Lock:
        with self._guard:
            found = self._locks.get(key)
            if found is None:
                found = self._locks[key] = threading.Lock()
            return found


class Gateway:
    """Applies HL7 v2 messages to the archive. ``submit`` is ``Services.submit``."""

    def __init__(self, submit: Callable[..., dict[str, Any]], message_log: MessageLog, *,
                 config: MappingConfig | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 control_id: Callable[[], str] = new_control_id) -> None:
        self.submit = submit
        self.log = message_log
        self.config = config or MappingConfig()
        self.now = now
        self.control_id = control_id
        self.locks = PatientLocks()

    def handle(self, data: bytes) -> Outcome:
        """Process one message (HL7 v2.8 §2.9 acknowledgement rules) and log what happened."""
        received = self.now().isoformat()
        raw = data.decode("utf-8", "replace")
        try:
            message = parse_message(data)
        except Hl7ParseError as exc:
            ack = build_nak_for_unparseable(data, exc.user_message, now=self.now(),
                                            control_id=self.control_id(), hl7_code=exc.hl7_code,
                                            location=exc.location)
            entry = LogEntry(0, received, "", "AR", "dead", str(exc), (), (), raw)
            return Outcome("AR", ack, self.log.record(entry))
        key = message_key(message)
        try:
            result = map_message(message, self.config)
        except Hl7Error as exc:
            return self._refuse(message, key, received, raw, exc, ())
        patient = result.patient_identifiers[0] if result.patient_identifiers else key
        duplicate = False
        try:
            with self.locks.lock(patient):
                response = self.submit(result.bundle, idempotency_key=key)
            resources = _locations(response)
        except AlreadyApplied:
            duplicate, resources = True, ()
        except Hl7Error as exc:
            return self._refuse(message, key, received, raw, exc, result.unmapped)
        except FhirError as exc:
            error = Hl7Error(f"refused by the archive: {exc}", hl7_code=207, ack_code="AE")
            return self._refuse(message, key, received, raw, error, result.unmapped)
        except Exception as exc:  # a store outage must not kill the connection
            log.exception("HL7 message %s could not be applied", key)
            error = Hl7Error(f"internal error: {type(exc).__name__}", hl7_code=207,
                             ack_code="AE")
            return self._refuse(message, key, received, raw, error, result.unmapped)
        entry = LogEntry(0, received, key, "AA", "done", "", resources, result.unmapped, raw,
                         duplicate)
        log_id = self.log.record(entry)
        return Outcome("AA", self._ack(message, "AA", None), log_id, duplicate)

    def replay(self, entry_id: int, fixed: bytes | None = None) -> Outcome:
        """Apply a dead letter again, as sent or as ``fixed``; marks it replayed on AA."""
        entry = self.log.get(entry_id)
        if entry is None:
            raise KeyError(f"no HL7 message log entry {entry_id}")
        outcome = self.handle(fixed if fixed is not None else entry.raw.encode("utf-8"))
        if outcome.code == "AA":
            self.log.set_status(entry_id, "replayed")
        return outcome

    def _refuse(self, message: Message, key: str, received: str, raw: str, error: Hl7Error,
                unmapped: tuple[str, ...]) -> Outcome:
        entry = LogEntry(0, received, key, error.ack_code, "dead", str(error), (), unmapped, raw)
        log_id = self.log.record(entry)
        return Outcome(error.ack_code, self._ack(message, error.ack_code, error), log_id)

    def _ack(self, message: Message, code: str, error: Hl7Error | None) -> str | None:
        """Original mode: the application ACK. Enhanced mode (MSH-15 set): the accept ACK
        (CA/CE/CR) when MSH-15 asks for it, else the application ACK when MSH-16 does
        (HL7 v2.8 §2.9.3); both are sent on this connection, after the commit."""
        accepted = code == "AA"
        if message.accept_ack_type.strip():
            if ack_wanted(message.accept_ack_type, accepted):
                code = _ENHANCED[code]
            elif not ack_wanted(message.app_ack_type, accepted):
                return None
        return build_ack(message, code, error=error, now=self.now(),
                         control_id=self.control_id())


def _locations(response: dict[str, Any]) -> tuple[str, ...]:
    found = []
    for item in response.get("entry", ()):
        location = (item.get("response") or {}).get("location")
        if location:
            found.append(str(location))
    return tuple(found)
