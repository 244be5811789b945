"""The HL7 v2 gateway: one framed message in, one acknowledgement out, nothing lost.

Transport-neutral (the MLLP server calls ``handle`` from a worker thread): parse and map in
the caller's thread, then hand the message to the group committer (``mllp.commit``), which
submits its transaction Bundle through the same service path as the REST API, with the
idempotency key ``hl7:{sending facility}|{sending application}|{MSH-10}``, and writes its
message-log row in the SAME database transaction (``mllp.transaction``), together with the
other messages that arrived meanwhile. AA is built only after that transaction committed; a
crash before it leaves the sender without an ACK, so it retries, and a redelivered message is
acknowledged without being applied twice. Messages are applied one at a time in the order they
were queued, so a patient's messages keep their order; refused ones become dead letters that
can be fixed and replayed. An A40 also moves the merged patient's clinical data to the survivor
(``mllp.merge``) inside the message's transaction.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from medarchive.errors import AlreadyApplied, FhirError
from medarchive.hl7v2 import (
    Hl7Error,
    Hl7ParseError,
    MappingConfig,
    MappingResult,
    Message,
    ack_wanted,
    build_ack,
    build_nak_for_unparseable,
    concept_map_table,
    decode_message,
    map_message,
    parse_message,
)
from medarchive.mllp.commit import GroupCommitter
from medarchive.mllp.log import LogEntry, MessageLog
from medarchive.mllp.transaction import NoTransaction, TransactionScope
from medarchive.security.actor import SYSTEM, Actor, acting
from medarchive.service.request import FhirRequest
from medarchive.service.router import Router

log = logging.getLogger(__name__)
Admit = Callable[[Message], Hl7Error | None]
_ENHANCED = {"AA": "CA", "AE": "CE", "AR": "CR"}


def new_control_id() -> str:
    """MSH-10 of our ACKs: unique per acknowledgement (HL7 v2.8 §2.14.9.10)."""
    return uuid.uuid4().hex[:20]


def sender(key: str) -> Actor:
    """Who a message's writes are audited as: the sending facility and application of its
    idempotency key (``message_key``), an in-process system."""
    return Actor("system", key.rpartition("|")[0], "integration", SYSTEM.scopes)


def message_key(message: Message) -> str:
    """The idempotency key of a message: sender and control id (HL7 v2.8 §2.10.1 duplicates)."""
    return f"hl7:{message.sending_facility}|{message.sending_app}|{message.control_id}"


@dataclass(frozen=True)
class Outcome:
    """What the gateway did: the ACK to send (None when the sender asked for none) and the log
    entry id. ``log_id`` 0 (and ``code`` empty) means nothing could be committed, not even the
    log row: the transport must not answer and should drop the connection, so the sender
    sends the message again."""

    code: str
    ack: str | None
    log_id: int
    duplicate: bool = False
    charset: str = "utf-8"

    def ack_bytes(self) -> bytes:
        """The ACK in the character set of the message it answers (MSH-18, HL7 v2.8
        §2.15.9.18), so a receiver reading it as declared sees the right text."""
        return (self.ack or "").encode(self.charset, "replace")


@dataclass(frozen=True)
class Prepared:
    """A message parsed and mapped, or refused before reaching the store (``error``)."""

    data: bytes
    received: str
    raw: str
    message: Message | None
    key: str
    result: MappingResult | None
    error: Hl7Error | None


@dataclass(frozen=True)
class Applied:
    """What the committed transaction holds for one message."""

    code: str
    log_id: int
    error: Hl7Error | None = None
    duplicate: bool = False


class Gateway:
    """Applies HL7 v2 messages to the archive. ``submit`` is ``Services.submit``;
    ``transactions`` the scope shared by the store and ``message_log`` (see
    ``app.build_gateway``), or None when they cannot share a transaction (each write then
    commits on its own). ``merge`` moves the clinical data of an A40's merged patients
    (``mllp.merge.PatientMerge``), in the message's transaction; None leaves it in place."""

    def __init__(self, submit: Callable[..., dict[str, Any]], message_log: MessageLog, *,
                 config: MappingConfig | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 control_id: Callable[[], str] = new_control_id,
                 transactions: TransactionScope | None = None,
                 max_group: int = 64, group_wait_ms: float = 2.0,
                 merge: Callable[[Sequence[tuple[str, str]]], tuple[str, ...]] | None = None
                 ) -> None:
        self.submit = submit
        self.merge = merge
        self.log = message_log
        self.config = config or MappingConfig()
        self.now = now
        self.control_id = control_id
        self.transactions = transactions or NoTransaction()
        self.committer = GroupCommitter(self.transactions, max_group=max_group,
                                        wait_ms=group_wait_ms)

    def handle(self, data: bytes, admit: Admit | None = None) -> Outcome:
        """Process one message (HL7 v2.8 §2.9 acknowledgement rules) and log what happened.
        ``admit`` (the transport's sender check, ``mllp.senders``) returns the error to refuse
        a parsed message with, or None to apply it."""
        return self._handle(data, None, admit)

    def replay(self, entry_id: int, fixed: bytes | None = None) -> Outcome:
        """Apply a dead letter again, as received or as ``fixed``, and record the attempt on
        the dead letter itself (attempts, last outcome and error) in the same transaction: on
        AA (applied, or found applied already) the message gets a log row of its own and the
        dead letter is marked replayed, pointing at it; refused again, it stays one dead letter.
        Raises KeyError for an unknown entry and ValueError for one that is not dead."""
        entry = self.log.get(entry_id)
        if entry is None:
            raise KeyError(f"no HL7 message log entry {entry_id}")
        if entry.status != "dead":
            raise ValueError(f"HL7 message log entry {entry_id} is {entry.status}, not dead")
        return self._handle(fixed if fixed is not None else entry.message_bytes(), entry_id,
                            None)

    def close(self) -> None:
        """Commit what is queued and stop the writer thread."""
        self.committer.close()

    def _handle(self, data: bytes, replaces: int | None, admit: Admit | None) -> Outcome:
        with self.committer.preparing():
            prepared = self.prepare(data, admit)
        future = self.committer.submit(lambda: self._apply(prepared, replaces),
                                       lambda exc: self._recover(prepared, exc, replaces))
        try:
            applied: Applied = future.result()
        except Exception as exc:
            # Not even the log row could be committed: no ACK at all, so the sender keeps the
            # message and sends it again (HL7 v2.8 Appendix C §C.4: no ACK, resend).
            log.error("HL7 message %s could not be committed or logged: %s",
                      prepared.key or "?", exc)
            return Outcome("", None, 0, charset=_charset(prepared))
        return self._answer(prepared, applied)

    def prepare(self, data: bytes, admit: Admit | None = None) -> Prepared:
        """Parse and map (no I/O): HL7 v2.8 §2.9.2 accept checks (the sender's too), then the
        mapping."""
        received = self.now().isoformat()
        raw = decode_message(data)
        try:
            message = parse_message(data)
        except Hl7ParseError as exc:
            return Prepared(data, received, raw, None, "", None, exc)
        key, raw = message_key(message), message.raw
        refused = admit(message) if admit is not None else None
        if refused is not None:
            return Prepared(data, received, raw, message, key, None, refused)
        try:
            result = map_message(message, self.config)
        except Hl7Error as exc:
            return Prepared(data, received, raw, message, key, None, exc)
        return Prepared(data, received, raw, message, key, result, None)

    def _apply(self, prepared: Prepared, replaces: int | None) -> Applied:
        """Runs in the committer's transaction, in the message's savepoint: the message's
        writes and its log row. A failure raises: the committer rolls the savepoint back and
        runs ``_recover``."""
        if prepared.result is None:
            assert prepared.error is not None
            return self._refuse(prepared, prepared.error, (), replaces)
        result = prepared.result
        with acting(sender(prepared.key)):
            response = self.submit(result.bundle, idempotency_key=prepared.key)
            written = _locations(response)
            if result.merges and self.merge is not None:
                written += self.merge(result.merges)
            entry = LogEntry(0, prepared.received, prepared.key, "AA", "done", "",
                             written, result.unmapped, prepared.raw)
            log_id = self.log.record(entry)
            self._replayed(replaces, log_id)
        return Applied("AA", log_id)

    def _replayed(self, replaces: int | None, log_id: int) -> None:
        if replaces is not None:
            self.log.attempted(replaces, outcome="AA", status="replayed", error="",
                               note=f"replayed as log entry {log_id}")

    def _recover(self, prepared: Prepared, failure: Exception, replaces: int | None
                 ) -> Applied:
        """After ``_apply`` failed and its writes were rolled back: a redelivery is logged as
        a duplicate, anything else as a refusal (a dead letter). A message refused before
        the store (``_apply`` only logs it) failed to log: that failure stands."""
        if prepared.result is None:
            raise failure
        unmapped = prepared.result.unmapped
        if isinstance(failure, AlreadyApplied):
            entry = LogEntry(0, prepared.received, prepared.key, "AA", "done", "", (),
                             unmapped, prepared.raw, True)
            log_id = self.log.record(entry)
            self._replayed(replaces, log_id)
            return Applied("AA", log_id, duplicate=True)
        if isinstance(failure, Hl7Error):
            return self._refuse(prepared, failure, unmapped, replaces)
        if isinstance(failure, FhirError):
            error = Hl7Error(f"refused by the archive: {failure}", hl7_code=207, ack_code="AE")
            return self._refuse(prepared, error, unmapped, replaces)
        # a store outage must not kill the connection
        log.error("HL7 message %s could not be applied", prepared.key, exc_info=failure)
        error = Hl7Error(f"internal error: {type(failure).__name__}", hl7_code=207,
                         ack_code="AE")
        return self._refuse(prepared, error, unmapped, replaces)

    def _refuse(self, prepared: Prepared, error: Hl7Error, unmapped: tuple[str, ...],
                replaces: int | None) -> Applied:
        """Log a refusal: a new dead letter holding the bytes as received, or, for a replay,
        the attempt on the dead letter replayed."""
        if replaces is not None:
            self.log.attempted(replaces, outcome=error.ack_code, status="dead",
                               error=str(error), note="replay refused")
            return Applied(error.ack_code, replaces, error)
        entry = LogEntry(0, prepared.received, prepared.key, error.ack_code, "dead", str(error),
                         (), unmapped, prepared.raw, data=prepared.data)
        return Applied(error.ack_code, self.log.record(entry), error)

    def _answer(self, prepared: Prepared, applied: Applied) -> Outcome:
        message, error = prepared.message, applied.error
        if message is None:
            error = prepared.error
            assert isinstance(error, Hl7ParseError)
            ack: str | None = build_nak_for_unparseable(
                prepared.data, error.user_message, now=self.now(),
                control_id=self.control_id(), hl7_code=error.hl7_code, location=error.location)
        else:
            ack = self._ack(message, applied.code, error)
        return Outcome(applied.code, ack, applied.log_id, applied.duplicate, _charset(prepared))

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


def mapping_config(router: Router, urls: str) -> MappingConfig:
    """The mapping rules with the site's ConceptMaps (setting ``hl7_concept_maps``: canonical
    URLs) read from the store through the service path (R4 §3.1.1.4 search, ConceptMap.url).
    A URL naming no ConceptMap is a configuration error, raised at start-up."""
    maps: list[dict[str, Any]] = []
    for url in (part.strip() for part in urls.split(",")):
        if not url:
            continue
        response = router.handle(FhirRequest("GET", "ConceptMap", query=(("url", url),),
                                             headers={"accept": "application/fhir+json"}))
        content = response.content()
        bundle = orjson.loads(content) if content and response.status == 200 else {}
        found = [e["resource"] for e in bundle.get("entry", ()) if "resource" in e]
        if not found:
            raise ValueError(f"hl7_concept_maps: no ConceptMap with url {url!r} in the store")
        maps += found
    return MappingConfig(concept_maps=concept_map_table(maps))


def _charset(prepared: Prepared) -> str:
    return prepared.message.charset if prepared.message is not None else "utf-8"


def _locations(response: dict[str, Any]) -> tuple[str, ...]:
    found = []
    for item in response.get("entry", ()):
        location = (item.get("response") or {}).get("location")
        if location:
            found.append(str(location))
    return tuple(found)
