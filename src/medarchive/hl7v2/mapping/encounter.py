"""PV1 (and PV2) → the FHIR Encounter a message happens in.

ADT events move a visit through its life (admit, transfer, discharge, cancel); orders, results
and documents only point at it. Like the Patient, the Encounter is matched by identifier (PV1-19
visit number with its authority) and written conditionally: ADT updates it, other messages only
create it when missing. A visit without a number gets an identifier derived from the message
(sending application, control id), so a replay still finds the same Encounter.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from medarchive.hl7v2.mapping import tables
from medarchive.hl7v2.mapping.common import (
    concept,
    condition,
    facility_system,
    identifier,
    location_text,
    practitioner,
    token,
    ts,
    v2_coding,
)
from medarchive.hl7v2.mapping.context import Context
from medarchive.hl7v2.message import Segment

PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
MESSAGE_SYSTEM = "urn:medarchive:hl7:msg:"
_PARTICIPANTS = ((7, "ATND", "attender"), (8, "REF", "referrer"), (9, "CON", "consultant"),
                 (17, "ADM", "admitter"))


def message_identifier(ctx: Context, local: str) -> dict[str, str]:
    """An identifier derived from the message for things it does not number itself:
    ``urn:medarchive:hl7:msg:<sending application>|<control id>-<local>``."""
    return {"system": MESSAGE_SYSTEM + quote(ctx.message.sending_app or "unknown", safe=""),
            "value": f"{ctx.message.control_id}-{local}"}


def map_encounter(ctx: Context, pv1: Segment, *, update: bool,
                  status: str | None = None) -> str:
    """PV1 → Encounter (V2-to-FHIR "PV1[Encounter]" map); returns the entry's fullUrl.

    ``status`` comes from the ADT trigger when there is one; otherwise it follows PV1-45
    (discharged: finished) and PV1-44 (admitted: in-progress), else "unknown".
    """
    ctx.mark(pv1, 1)
    encounter: dict[str, Any] = {"resourceType": "Encounter"}
    visit = next((i for i in (identifier(ctx, node, type_code="VN",
                                         fallback=facility_system(ctx))
                              for node in ctx.reps(pv1, 19)) if i), None)
    identifiers = [visit] if visit else []
    identifiers += [i for i in (identifier(ctx, node, fallback=facility_system(ctx))
                                for node in ctx.reps(pv1, 50)) if i]
    if visit is None or "system" not in visit:
        visit = message_identifier(ctx, f"PV1-{pv1.sequence}")
        identifiers.insert(0, visit)
    encounter["identifier"] = identifiers
    start = ts(ctx, ctx.node(pv1, 44))
    end = ts(ctx, ctx.node(pv1, 45))
    if status is None:
        status = "finished" if end else "in-progress" if start else "unknown"
    encounter["status"] = status
    encounter["class"] = _class(ctx, pv1)
    types = [c for c in (v2_coding(ctx.node(pv1, 4), 1, 7), v2_coding(ctx.node(pv1, 18), 1, 18))
             if c]
    if types:
        encounter["type"] = types
    service = v2_coding(ctx.node(pv1, 10), 1, 69)
    if service:
        encounter["serviceType"] = service
    if ctx.patient:
        encounter["subject"] = {"reference": ctx.patient}
    participants = []
    for field_no, code, text in _PARTICIPANTS:
        for node in ctx.reps(pv1, field_no):
            ref = practitioner(ctx, node)
            if ref:
                participants.append({"type": [{"coding": [
                    {"system": PARTICIPATION, "code": code, "display": text}]}],
                    "individual": ref})
    if participants:
        encounter["participant"] = participants
    if start or end:
        encounter["period"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    locations = _locations(ctx, pv1, status)
    if locations:
        encounter["location"] = locations
    hospitalization = _hospitalization(ctx, pv1)
    if hospitalization:
        encounter["hospitalization"] = hospitalization
    provider = ctx.take(pv1, 39)
    if provider:
        encounter["serviceProvider"] = {"display": provider}
    _visit_details(ctx, encounter)
    full_url = ctx.add(encounter, key=f"Encounter|{token(visit)}",
                       method="PUT" if update else "POST", condition=condition(visit))
    ctx.encounter = full_url
    return full_url


def _class(ctx: Context, pv1: Segment) -> dict[str, str]:
    node = ctx.node(pv1, 2)
    code = node.peek(1).upper()
    if code in tables.PATIENT_CLASS:
        node.mark(1)
        act, display = tables.PATIENT_CLASS[code]
        return {"system": tables.ACT_CODE, "code": act, "display": display}
    if code:
        node.mark(1)
        return {"system": tables.V2_TABLE.format(4), "code": node.peek(1)}
    return {"system": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "code": "UNK",
            "display": "unknown"}


def _locations(ctx: Context, pv1: Segment, status: str) -> list[dict[str, Any]]:
    """PV1-3 assigned, PV1-11 temporary, PV1-6 prior, PV1-42 pending location."""
    current = "completed" if status in ("finished", "cancelled") else "active"
    out = []
    for field_no, state in ((3, current), (11, current), (6, "completed"), (42, "planned")):
        for node in ctx.reps(pv1, field_no):
            text = location_text(node)
            if text:
                out.append({"location": {"display": text}, "status": state})
    return out


def _hospitalization(ctx: Context, pv1: Segment) -> dict[str, Any]:
    result: dict[str, Any] = {}
    pre_admission = identifier(ctx, ctx.node(pv1, 5), fallback=facility_system(ctx))
    if pre_admission:
        result["preAdmissionIdentifier"] = pre_admission
    for field_no, table_no, key in ((14, 23, "admitSource"), (13, 92, "reAdmission"),
                                    (36, 112, "dischargeDisposition")):
        value = v2_coding(ctx.node(pv1, field_no), 1, table_no)
        if value:
            result[key] = value
    destination = ctx.node(pv1, 37)
    if destination.peek(1):
        result["destination"] = {"display": destination[1]}
    diets = [c for c in (concept(ctx, node) for node in ctx.reps(pv1, 38)) if c]
    if diets:
        result["dietPreference"] = diets
    return result


def _visit_details(ctx: Context, encounter: dict[str, Any]) -> None:
    """PV2-3 admit reason → reasonCode."""
    pv2 = ctx.message.segment("PV2")
    if pv2 is None:
        return
    reason = concept(ctx, ctx.node(pv2, 3))
    if reason:
        encounter["reasonCode"] = [reason]
