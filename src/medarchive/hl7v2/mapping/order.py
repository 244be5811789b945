"""ORC, OBR, TQ1 and SPM pieces shared by every order-shaped message (ORU, ORM, OML, RDE, VXU).

An order is known by its placer number (ORC-2/OBR-2) and filler number (ORC-3/OBR-3); its state
by ORC-5 order status or, failing that, ORC-1 order control; its timing by TQ1 (v2.5+) or the
older TQ in ORC-7. Each resource built from an order (ServiceRequest, DiagnosticReport,
MedicationRequest, Immunization) takes these the same way, so they are read here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from medarchive.hl7v2.mapping import tables
from medarchive.hl7v2.mapping.common import (
    application_system,
    concept,
    condition,
    date_time,
    entity_identifier,
    practitioner,
    token,
    ts,
)
from medarchive.hl7v2.mapping.context import Context, Node
from medarchive.hl7v2.mapping.encounter import MESSAGE_SYSTEM, message_identifier
from medarchive.hl7v2.message import Segment


@dataclass(frozen=True)
class OrderIds:
    """The identifiers of one order and the one used to match it on replay."""

    placer: dict[str, Any] | None
    filler: dict[str, Any] | None
    key: dict[str, Any]
    extra: tuple[dict[str, Any], ...] = ()

    def all(self) -> list[dict[str, Any]]:
        return [i for i in (self.placer, self.filler, *self.extra) if i]


def order_ids(ctx: Context, orc: Segment | None, obr: Segment | None, *, prefer: str,
              local: str) -> OrderIds:
    """Placer (ORC-2, else OBR-2) and filler (ORC-3, else OBR-3) numbers as identifiers.

    ``prefer`` ("placer" or "filler") picks the match key; without either number the key is
    derived from the message (``local`` distinguishes groups within it).
    """
    fallback = application_system(ctx)
    found: dict[str, dict[str, Any] | None] = {}
    extra: list[dict[str, Any]] = []
    for name, field_no, code in (("placer", 2, "PLAC"), ("filler", 3, "FILL")):
        candidates = [i for i in (entity_identifier(ctx, ctx.node(seg, field_no),
                                                    type_code=code, fallback=fallback)
                                  for seg in (orc, obr) if seg is not None) if i]
        found[name] = candidates[0] if candidates else None
        extra += [i for i in candidates[1:] if i != candidates[0]]
    other = "filler" if prefer == "placer" else "placer"
    key = found[prefer] or found[other]
    if key is None or "system" not in key:
        key = message_identifier(ctx, local)
    return OrderIds(found["placer"], found["filler"], key, tuple(extra))


def with_key(ids: OrderIds) -> list[dict[str, Any]]:
    """The identifier list of a resource: placer, filler, and the derived key if it is new."""
    out = ids.all()
    if ids.key not in out:
        out.append(ids.key)
    return out


def order_status(ctx: Context, orc: Segment | None) -> str | None:
    """ORC-5 order status (table 0038), else ORC-1 order control (table 0119), as a FHIR
    request status (active, revoked, completed, on-hold, entered-in-error)."""
    if orc is None:
        return None
    status = tables.ORDER_STATUS.get(ctx.node(orc, 5).peek(1).upper())
    if status:
        ctx.take(orc, 5)
        ctx.take(orc, 1)
        return status
    status = tables.ORDER_CONTROL.get(ctx.node(orc, 1).peek(1).upper())
    if status:
        ctx.take(orc, 1)
    return status


def requester(ctx: Context, orc: Segment | None, obr: Segment | None) -> dict[str, Any] | None:
    """ORC-12 ordering provider, else OBR-16."""
    for seg, field_no in ((orc, 12), (obr, 16)):
        if seg is not None:
            for node in ctx.reps(seg, field_no):
                ref = practitioner(ctx, node)
                if ref:
                    return ref
    return None


@dataclass(frozen=True)
class Timing:
    """TQ1 (or the TQ of ORC-7/RXE-1): when, how often, how urgent."""

    start: str | None = None
    end: str | None = None
    repeat: str | None = None
    priority: str | None = None
    as_needed: bool = False


def timing(ctx: Context, tq1: Segment | None, legacy: Node | None = None) -> Timing:
    """TQ1-3 repeat pattern, TQ1-7/8 start and end, TQ1-9 priority (table 0485); or the same
    from a TQ node (TQ-2.1 interval, TQ-4/5 start/end, TQ-6 priority) for v2.3-2.4 senders."""
    if tq1 is not None:
        ctx.mark(tq1, 1)
        start, end = ts(ctx, ctx.node(tq1, 7)), ts(ctx, ctx.node(tq1, 8))
        repeat = ctx.node(tq1, 3).peek(1)
        if repeat:
            ctx.node(tq1, 3).mark(1)
        code = ctx.node(tq1, 9).peek(1).upper()
        priority = tables.PRIORITY.get(code)
        if priority or code == "PRN":
            ctx.node(tq1, 9).mark(1)
            ctx.node(tq1, 9).mark(2)
            ctx.node(tq1, 9).mark(3)
        return Timing(start, end, repeat or None, priority, code == "PRN")
    if legacy is None or legacy.empty:
        return Timing()
    start, end = date_time(ctx, legacy.part(4), 1), date_time(ctx, legacy.part(5), 1)
    pattern = legacy.part(2)[1]
    code = legacy.peek(6).upper()
    priority = tables.PRIORITY.get(code)
    if priority or code == "PRN":
        legacy.mark(6)
    return Timing(start, end, pattern or None, priority, code == "PRN")


def specimen(ctx: Context, spm: Segment, base: dict[str, Any]) -> str:
    """SPM → Specimen (V2-to-FHIR "SPM[Specimen]"): SPM-2 identifiers (placer/filler EIP),
    SPM-4 type, SPM-7 method, SPM-8 body site, SPM-17 collection time, SPM-18 received."""
    ctx.mark(spm, 1)
    resource: dict[str, Any] = {"resourceType": "Specimen"}
    ids_node = ctx.node(spm, 2)
    identifiers = [i for i in (entity_identifier(ctx, ids_node.part(1), type_code="PLAC",
                                                 fallback=base.get("system")),
                               entity_identifier(ctx, ids_node.part(2), type_code="FILL",
                                                 fallback=base.get("system"))) if i]
    key = next((i for i in identifiers if "system" in i), None)
    if key is None:
        key = {"system": base.get("system", MESSAGE_SYSTEM + "unknown"),
               "value": f"{base['value']}/SPM-{ctx.node(spm, 1).peek(1) or spm.sequence}"}
        identifiers.append(key)
    resource["identifier"] = identifiers
    kind = concept(ctx, ctx.node(spm, 4))
    if kind:
        resource["type"] = kind
    if ctx.patient:
        resource["subject"] = {"reference": ctx.patient}
    received = ts(ctx, ctx.node(spm, 18))
    if received:
        resource["receivedTime"] = received
    collection: dict[str, Any] = {}
    window = ctx.node(spm, 17)
    start, end = date_time(ctx, window.part(1), 1), date_time(ctx, window.part(2), 1)
    if start and end:
        collection["collectedPeriod"] = {"start": start, "end": end}
    elif start:
        collection["collectedDateTime"] = start
    method = concept(ctx, ctx.node(spm, 7))
    if method:
        collection["method"] = method
    site = concept(ctx, ctx.node(spm, 8))
    if site:
        collection["bodySite"] = site
    if collection:
        resource["collection"] = collection
    return ctx.add(resource, key=f"Specimen|{token(key)}", method="PUT",
                   condition=condition(key))


def reasons(ctx: Context, seg: Segment, field_no: int) -> list[dict[str, Any]]:
    """A repeating CE/CWE field as a list of CodeableConcepts."""
    return [c for c in (concept(ctx, node) for node in ctx.reps(seg, field_no)) if c]
