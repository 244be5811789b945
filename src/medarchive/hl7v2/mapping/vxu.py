"""VXU^V04 (unsolicited vaccination record update) → FHIR Immunization.

Each ORC/RXA pair is one administered (or refused, or historical) dose, following the CDC
"HL7 2.5.1 Implementation Guide for Immunization Messaging" and the V2-to-FHIR
"RXA[Immunization]" map. The OBX segments of a dose carry its funding source, eligibility and
the vaccine information statements given; those become Immunization elements, other OBX
become Observations.
"""

from __future__ import annotations

from typing import Any

from medarchive.hl7v2.errors import Location
from medarchive.hl7v2.mapping import tables
from medarchive.hl7v2.mapping.common import (
    concept,
    condition,
    convert_ts,
    date_time,
    notes,
    number,
    practitioner,
    quantity,
    token,
    ts,
)
from medarchive.hl7v2.mapping.context import Context
from medarchive.hl7v2.mapping.encounter import map_encounter
from medarchive.hl7v2.mapping.observation import map_observation
from medarchive.hl7v2.mapping.order import order_ids, with_key
from medarchive.hl7v2.mapping.patient import map_patient
from medarchive.hl7v2.message import Segment

PERFORMER_FUNCTION = "http://terminology.hl7.org/CodeSystem/v2-0443"
FUNDING_SOURCE, ELIGIBILITY = "30963-3", "64994-7"
VIS_DOCUMENT, VIS_PUBLISHED, VIS_PRESENTED = "69764-9", "29768-9", "29769-7"


def map_vxu(ctx: Context) -> None:
    """VXU^V04: PID → Patient (create if missing), PV1 → Encounter, each RXA (with the ORC
    before it and the RXR/OBX/NTE after it) → Immunization."""
    map_patient(ctx, ctx.required_segment("PID"), update=False)
    pv1 = ctx.message.segment("PV1")
    if pv1 is not None:
        map_encounter(ctx, pv1, update=False)
    orc: Segment | None = None
    group: list[Segment] = []
    rxa: Segment | None = None
    doses = 0
    for seg in ctx.message.segment_list:
        if seg.name in ("ORC", "RXA") and rxa is not None:
            _immunization(ctx, orc, rxa, group)
            doses += 1
            rxa, group = None, []
            orc = None
        if seg.name == "ORC":
            orc = seg
        elif seg.name == "RXA":
            rxa = seg
        elif rxa is not None:
            group.append(seg)
    if rxa is not None:
        _immunization(ctx, orc, rxa, group)
        doses += 1
    if not doses:
        raise ctx.fail("VXU^V04 carries no RXA segment", Location("RXA"), 100)


def _immunization(ctx: Context, orc: Segment | None, rxa: Segment,
                  group: list[Segment]) -> None:
    for field_no in (1, 2):
        ctx.take(rxa, field_no)
    ids = order_ids(ctx, orc, None, prefer="filler", local=f"RXA-{rxa.sequence}")
    vaccine = concept(ctx, ctx.node(rxa, 5))
    occurred = ts(ctx, ctx.node(rxa, 3))
    if vaccine is None or occurred is None:
        raise ctx.fail("RXA-3 (date/time of administration) and RXA-5 (vaccine) are required",
                       Location("RXA", rxa.sequence, 3 if occurred is None else 5))
    imm: dict[str, Any] = {"resourceType": "Immunization", "identifier": with_key(ids)}
    status = tables.IMMUNIZATION_STATUS.get(ctx.node(rxa, 20).peek(1).upper(), "completed")
    if ctx.node(rxa, 20).peek(1).upper() in tables.IMMUNIZATION_STATUS:
        ctx.take(rxa, 20)
    if ctx.node(rxa, 21).peek(1).upper() == "D":
        ctx.take(rxa, 21)
        status = "entered-in-error"
    elif ctx.node(rxa, 21).peek(1).upper() in ("A", "U"):
        ctx.take(rxa, 21)
    imm["status"] = status
    refusal = concept(ctx, ctx.node(rxa, 18))
    if refusal and status == "not-done":
        imm["statusReason"] = refusal
    imm["vaccineCode"] = vaccine
    if ctx.patient:
        imm["patient"] = {"reference": ctx.patient}
    if ctx.encounter:
        imm["encounter"] = {"reference": ctx.encounter}
    imm["occurrenceDateTime"] = occurred
    recorded = ts(ctx, ctx.node(rxa, 22))
    if recorded:
        imm["recorded"] = recorded
    _source(ctx, rxa, imm)
    place = ctx.node(rxa, 11)
    text = ", ".join(v for v in (place.part(4)[1], place[1], place[2], place[3]) if v)
    if text:
        imm["location"] = {"display": text}
    _product(ctx, rxa, imm)
    rxr = next((s for s in group if s.name == "RXR"), None)
    if rxr is not None:
        for field_no, key in ((2, "site"), (1, "route")):
            value = concept(ctx, ctx.node(rxr, field_no))
            if value:
                imm[key] = value
    performers = [{"function": {"coding": [{"system": PERFORMER_FUNCTION, "code": "AP"}]},
                   "actor": ref} for ref in (practitioner(ctx, node)
                                             for node in ctx.reps(rxa, 10)) if ref]
    if orc is not None:
        performers += [{"function": {"coding": [{"system": PERFORMER_FUNCTION,
                                                 "code": "OP"}]}, "actor": ref}
                       for ref in (practitioner(ctx, node) for node in ctx.reps(orc, 12))
                       if ref]
    if performers:
        imm["performer"] = performers
    reasons = [c for c in (concept(ctx, node) for node in ctx.reps(rxa, 19)) if c]
    if reasons:
        imm["reasonCode"] = reasons
    if ctx.node(rxa, 20).peek(1).upper() == "PA":
        imm["isSubpotent"] = True
    annotations = notes(ctx, ctx.following(rxa))
    if annotations:
        imm["note"] = annotations
    _details(ctx, group, imm, ids.key)
    ctx.add(imm, key=f"Immunization|{token(ids.key)}", method="PUT",
            condition=condition(ids.key))


def _source(ctx: Context, rxa: Segment, imm: dict[str, Any]) -> None:
    """RXA-9 (NIP001): 00 new record → primarySource; 01-08 historical → reportOrigin."""
    node = ctx.node(rxa, 9)
    code = node.peek(1)
    if code == "00":
        for part in (1, 2, 3):
            node.mark(part)
        imm["primarySource"] = True
    elif code:
        origin = concept(ctx, node)
        imm["primarySource"] = False
        if origin:
            imm["reportOrigin"] = origin


def _product(ctx: Context, rxa: Segment, imm: dict[str, Any]) -> None:
    """RXA-17 manufacturer, RXA-15 lot, RXA-16 expiry, RXA-6/7 dose (999 means unknown)."""
    maker = ctx.node(rxa, 17)
    if maker.peek(1) or maker.peek(2):
        reference: dict[str, Any] = {}
        if maker.peek(1):
            reference["identifier"] = {"system": tables.code_system_uri(maker.peek(3) or "MVX"),
                                       "value": maker[1]}
            maker.mark(3)
        if maker.peek(2):
            reference["display"] = maker[2]
        imm["manufacturer"] = reference
    lot = ctx.node(rxa, 15)
    if lot.peek(1):
        imm["lotNumber"] = lot[1]
    expiry = date_time(ctx, ctx.node(rxa, 16), 1, "date")
    if expiry:
        imm["expirationDate"] = expiry
    amount = number(ctx.node(rxa, 6).peek(1))
    if amount == 999:
        ctx.take(rxa, 6)
    elif amount is not None:
        ctx.take(rxa, 6)
        units = ctx.node(rxa, 7)
        imm["doseQuantity"] = quantity(amount, None if units.empty else units)


def _details(ctx: Context, group: list[Segment], imm: dict[str, Any],
             base: dict[str, Any]) -> None:
    """The dose's OBX: funding source, eligibility and VIS → Immunization; others →
    Observations. A VIS date without its document type (imm-1) stays unmapped."""
    education: dict[str, tuple[dict[str, str], list[tuple[Segment, tuple[int, ...]]]]] = {}
    used: set[str] = set()
    for obx in (s for s in group if s.name == "OBX"):
        code = ctx.node(obx, 3).peek(1)
        value = ctx.node(obx, 5)
        if code == FUNDING_SOURCE and (found := concept(ctx, value)):
            imm["fundingSource"] = found
        elif code == ELIGIBILITY and (found := concept(ctx, value)):
            imm.setdefault("programEligibility", []).append(found)
        elif code in (VIS_DOCUMENT, VIS_PUBLISHED, VIS_PRESENTED) and value.peek(1):
            entry, parts = education.setdefault(
                ctx.node(obx, 4).peek(1) or str(obx.sequence), ({}, []))
            if code == VIS_DOCUMENT:
                entry["documentType"] = value.peek(2) or value.peek(1)
                parts.append((obx, (1, 2)))
            elif (moment := convert_ts(value.peek(1), ctx.zone)) is not None:
                entry["publicationDate" if code == VIS_PUBLISHED else "presentationDate"] = (
                    moment)
                parts.append((obx, (1,)))
            continue
        else:
            map_observation(ctx, obx, ctx.following(obx), base=base, used_keys=used,
                            update=False)
            continue
        _consume(ctx, obx)
    complete = []
    for entry, parts in education.values():
        if "documentType" in entry:
            complete.append(entry)
            for obx, value_parts in parts:
                for part in value_parts:
                    ctx.node(obx, 5).mark(part)
                _consume(ctx, obx)
    if complete:
        imm["education"] = complete


def _consume(ctx: Context, obx: Segment) -> None:
    """The OBX fields around a value that became an Immunization element."""
    for field_no in (1, 2, 4, 11, 14):
        ctx.take(obx, field_no)
    for part in (1, 2, 3):
        ctx.node(obx, 3).mark(part)
