"""SIU^S12-S15 (scheduling: book, reschedule, modify, cancel) → FHIR Appointment.

The filler application (the scheduler) owns the appointment, so it is matched by the filler
appointment id (SCH-2, else the placer id SCH-1) and updated conditionally: S13/S14/S15 for the
same id reschedule, modify or cancel the Appointment S12 created (V2-to-FHIR "SCH[Appointment]"
map). Resources (AIS service, AIG equipment, AIL location, AIP personnel) become participants.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from medarchive.hl7v2.errors import Location
from medarchive.hl7v2.mapping import tables
from medarchive.hl7v2.mapping.common import (
    application_system,
    concept,
    condition,
    entity_identifier,
    location_text,
    notes,
    number,
    practitioner,
    token,
    ts,
)
from medarchive.hl7v2.mapping.context import Context
from medarchive.hl7v2.mapping.encounter import map_encounter, message_identifier
from medarchive.hl7v2.mapping.order import timing
from medarchive.hl7v2.mapping.patient import map_patient
from medarchive.hl7v2.message import Segment

_TRIGGER_STATUS = {"S12": "booked", "S13": "booked", "S14": "booked", "S15": "cancelled"}
_PARTICIPANT_STATUS = {"booked": "accepted", "arrived": "accepted", "fulfilled": "accepted",
                       "cancelled": "declined", "noshow": "declined",
                       "entered-in-error": "declined"}
_MINUTES = {"MIN": 1, "MINUTE": 1, "MINUTES": 1, "M": 1, "": 1, "S": 1 / 60, "SEC": 1 / 60,
            "H": 60, "HR": 60, "HOUR": 60, "HOURS": 60, "D": 1440, "DAY": 1440}


def map_siu(ctx: Context) -> None:
    """SIU^S12-S15: SCH (+TQ1, NTE) → Appointment; PID → Patient (create if missing), PV1 →
    Encounter; AIS/AIG/AIL/AIP → serviceType and participants."""
    sch = ctx.required_segment("SCH")
    map_patient(ctx, ctx.required_segment("PID"), update=False)
    pv1 = ctx.message.segment("PV1")
    if pv1 is not None:
        map_encounter(ctx, pv1, update=False)
    fallback = application_system(ctx)
    placer = entity_identifier(ctx, ctx.node(sch, 1), type_code="PLAC", fallback=fallback)
    filler = entity_identifier(ctx, ctx.node(sch, 2), type_code="FILL", fallback=fallback)
    key = filler or placer or message_identifier(ctx, "SCH")
    appointment: dict[str, Any] = {"resourceType": "Appointment",
                                   "identifier": [i for i in (placer, filler) if i] or [key]}
    status = _status(ctx, sch)
    appointment["status"] = status
    if status == "cancelled":
        reason = concept(ctx, ctx.node(sch, 6))
        if reason:
            appointment["cancelationReason"] = reason
    services = [c for c in (concept(ctx, ctx.node(ais, 3)) for ais in
                            ctx.message.segments("AIS")) if c]
    if services:
        appointment["serviceType"] = services
    kind = concept(ctx, ctx.node(sch, 8))
    if kind:
        appointment["appointmentType"] = kind
    reason = concept(ctx, ctx.node(sch, 7))
    if reason:
        appointment["reasonCode"] = [reason]
    _times(ctx, sch, appointment)
    comment = "\n".join(n["text"] for n in notes(ctx, ctx.following(sch, frozenset(
        {"NTE", "TQ1"}))))
    if comment:
        appointment["comment"] = comment
    appointment["participant"] = _participants(ctx, _PARTICIPANT_STATUS.get(status,
                                                                            "needs-action"))
    ctx.add(appointment, key=f"Appointment|{token(key)}", method="PUT",
            condition=condition(key))


def _status(ctx: Context, sch: Segment) -> str:
    trigger = ctx.message.trigger
    by_filler = tables.APPOINTMENT_STATUS.get(ctx.node(sch, 25).peek(1).upper())
    if trigger == "S15":
        if by_filler == "cancelled":
            ctx.take(sch, 25)
        return "cancelled"
    if by_filler:
        ctx.take(sch, 25)
        return by_filler
    return _TRIGGER_STATUS[trigger]


def _times(ctx: Context, sch: Segment, appointment: dict[str, Any]) -> None:
    """Start/end from TQ1-7/8, else SCH-11.4/5 (TQ), else the first AIS/AIL/AIP start plus
    duration; minutesDuration from SCH-9/SCH-10."""
    tq1 = ctx.message.segment("TQ1")
    when = timing(ctx, tq1, None) if tq1 is not None else timing(ctx, None, ctx.node(sch, 11))
    start = _instant(when.start) if when.start else None
    end = _instant(when.end) if when.end else None
    minutes = _duration(ctx, sch, 9, 10)
    if start is None:
        for name in ("AIS", "AIG", "AIL", "AIP"):
            for seg in ctx.message.segments(name):
                start_at = {"AIS": 4, "AIG": 8, "AIL": 6, "AIP": 6}[name]
                moment = ts(ctx, ctx.node(seg, start_at), "instant")
                if moment:
                    start = moment
                    minutes = minutes or _duration(ctx, seg, start_at + 3, start_at + 4)
                    break
            if start:
                break
    if start and end is None and minutes:
        end = (datetime.fromisoformat(start) + timedelta(minutes=minutes)).isoformat()
    if start:
        appointment["start"] = start
    if end:
        appointment["end"] = end
    if minutes:
        appointment["minutesDuration"] = minutes
    if appointment["status"] not in ("proposed", "cancelled", "waitlist") and not (
            start and end):
        raise ctx.fail("a booked appointment needs a start and end (TQ1-7/8, SCH-11 or "
                       "AIS-4 with a duration)", Location("TQ1", 1, 7), 101)


def _instant(value: str) -> str | None:
    return value if "T" in value else None


def _duration(ctx: Context, seg: Segment, amount: int, units: int) -> int | None:
    value = number(ctx.node(seg, amount).peek(1))
    factor = _MINUTES.get(ctx.node(seg, units).peek(1).upper())
    if value is None or factor is None or value * factor < 1:
        return None
    ctx.take(seg, amount)
    ctx.take(seg, units)
    return round(value * factor)


def _participants(ctx: Context, status: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if ctx.patient:
        out.append({"actor": {"reference": ctx.patient}, "status": status})
    for aip in ctx.message.segments("AIP"):
        for node in ctx.reps(aip, 3):
            ref = practitioner(ctx, node)
            if ref:
                entry: dict[str, Any] = {"actor": ref, "status": status}
                role = concept(ctx, ctx.node(aip, 4))
                if role:
                    entry["type"] = [role]
                out.append(entry)
    for ail in ctx.message.segments("AIL"):
        for node in ctx.reps(ail, 3):
            text = location_text(node)
            if text:
                out.append({"actor": {"display": text}, "status": status})
    for aig in ctx.message.segments("AIG"):
        resource = concept(ctx, ctx.node(aig, 3))
        if resource:
            name = resource.get("text") or next(
                (c.get("display") or c["code"] for c in resource.get("coding", [])), "")
            entry = {"actor": {"display": name}, "status": status}
            kind = concept(ctx, ctx.node(aig, 4))
            if kind:
                entry["type"] = [kind]
            out.append(entry)
    return out
