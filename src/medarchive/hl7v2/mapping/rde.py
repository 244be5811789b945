"""RDE^O11 (pharmacy encoded order) and ORM pharmacy orders (RXO) → FHIR MedicationRequest.

The V2-to-FHIR "RXE[MedicationRequest]" and "RXO[MedicationRequest]" maps share their targets:
give code → medication, give amount and units → dose, TQ1 → timing, RXR → route/site/method,
dispense amount and refills → dispenseRequest. RXE and RXO carry the same data at different
positions, so one builder reads either through a table of field numbers.
"""

from __future__ import annotations

from typing import Any

from medarchive.hl7v2.errors import Location
from medarchive.hl7v2.mapping import tables
from medarchive.hl7v2.mapping.common import (
    concept,
    condition,
    entity_identifier,
    notes,
    number,
    quantity,
    token,
    ts,
)
from medarchive.hl7v2.mapping.context import Context, Node
from medarchive.hl7v2.mapping.encounter import map_encounter
from medarchive.hl7v2.mapping.order import (
    order_ids,
    order_status,
    requester,
    timing,
    with_key,
)
from medarchive.hl7v2.mapping.patient import map_patient
from medarchive.hl7v2.message import Segment

REPEAT_PATTERN = tables.V2_TABLE.format(335)
# field numbers of the same data in RXE and RXO
_FIELDS = {
    "RXE": {"code": 2, "min": 3, "max": 4, "units": 5, "instructions": 7, "substitution": 9,
            "dispense": 10, "dispense_units": 11, "refills": 12, "rate": 23, "rate_units": 24,
            "prescription": 15},
    "RXO": {"code": 1, "min": 2, "max": 3, "units": 4, "instructions": 7, "substitution": 9,
            "dispense": 11, "dispense_units": 12, "refills": 13, "rate": 21, "rate_units": 22},
}


def medication_request(ctx: Context, orc: Segment | None, detail: Segment,
                       tq1: Segment | None, rxr: Segment | None) -> str:
    """RXE or RXO (with its ORC, TQ1 and RXR) → MedicationRequest; returns the fullUrl.

    Matched by placer order number (ORC-2), conditional update: a later cancel or status
    change of the same order updates it.
    """
    f = _FIELDS[detail.name]
    ids = order_ids(ctx, orc, None, prefer="placer", local=f"{detail.name}-{detail.sequence}")
    identifiers = with_key(ids)
    if "prescription" in f:
        rx_number = entity_identifier(ctx, ctx.node(detail, f["prescription"]),
                                      fallback=ids.key.get("system"))
        if rx_number:
            identifiers.append(rx_number)
    medication = concept(ctx, ctx.node(detail, f["code"]))
    if medication is None:
        raise ctx.fail(f"{detail.name}-{f['code']} give code is empty",
                       Location(detail.name, detail.sequence, f["code"]))
    status = order_status(ctx, orc)
    request: dict[str, Any] = {
        "resourceType": "MedicationRequest", "identifier": identifiers,
        "status": tables.MEDICATION_STATUS.get(status or "", "unknown"), "intent": "order",
    }
    when = timing(ctx, tq1, ctx.node(detail, 1) if detail.name == "RXE" else None)
    if when.priority:
        request["priority"] = when.priority
    request["medicationCodeableConcept"] = medication
    if ctx.patient:
        request["subject"] = {"reference": ctx.patient}
    if ctx.encounter:
        request["encounter"] = {"reference": ctx.encounter}
    authored = ts(ctx, ctx.node(orc, 9)) if orc is not None else None
    if authored:
        request["authoredOn"] = authored
    who = requester(ctx, orc, None)
    if who:
        request["requester"] = who
    annotations = notes(ctx, ctx.following(detail))
    if annotations:
        request["note"] = annotations
    dosage = _dosage(ctx, detail, f, when, rxr)
    if dosage:
        request["dosageInstruction"] = [dosage]
    dispense = _dispense(ctx, detail, f)
    if dispense:
        request["dispenseRequest"] = dispense
    allowed = {"N": False, "G": True, "T": True}.get(
        ctx.node(detail, f["substitution"]).peek(1).upper())
    if allowed is not None:
        ctx.take(detail, f["substitution"])
        request["substitution"] = {"allowedBoolean": allowed}
    return ctx.add(request, key=f"MedicationRequest|{token(ids.key)}", method="PUT",
                   condition=condition(ids.key))


def _dosage(ctx: Context, detail: Segment, f: dict[str, int], when: Any,
            rxr: Segment | None) -> dict[str, Any]:
    dosage: dict[str, Any] = {}
    texts = []
    for node in ctx.reps(detail, f["instructions"]):
        text = concept(ctx, node)
        if text:
            texts.append(text.get("text") or text["coding"][0].get("display")
                         or text["coding"][0]["code"])
    if texts:
        dosage["text"] = "; ".join(texts)
    repeat: dict[str, Any] = {}
    if when.start or when.end:
        repeat["boundsPeriod"] = {k: v for k, v in (("start", when.start), ("end", when.end))
                                  if v}
    timing_value: dict[str, Any] = {}
    if repeat:
        timing_value["repeat"] = repeat
    if when.repeat:
        timing_value["code"] = {"coding": [{"system": REPEAT_PATTERN, "code": when.repeat}],
                                "text": when.repeat}
    if timing_value:
        dosage["timing"] = timing_value
    if when.as_needed:
        dosage["asNeededBoolean"] = True
    if rxr is not None:
        for field_no, key in ((2, "site"), (1, "route"), (4, "method")):
            value = concept(ctx, ctx.node(rxr, field_no))
            if value:
                dosage[key] = value
    dose_and_rate = _dose(ctx, detail, f)
    if dose_and_rate:
        dosage["doseAndRate"] = [dose_and_rate]
    return dosage


def _amount(ctx: Context, detail: Segment, field_no: int, units: Node | None) -> (
        dict[str, Any] | None):
    value = number(ctx.node(detail, field_no).peek(1))
    if value is None:
        return None
    ctx.take(detail, field_no)
    return quantity(value, units)


def _units(ctx: Context, detail: Segment, field_no: int) -> Node | None:
    node = ctx.node(detail, field_no)
    return None if node.empty else node


def _dose(ctx: Context, detail: Segment, f: dict[str, int]) -> dict[str, Any]:
    units = _units(ctx, detail, f["units"])
    low = _amount(ctx, detail, f["min"], units)
    high = _amount(ctx, detail, f["max"], units)
    result: dict[str, Any] = {}
    if low and high:
        result["doseRange"] = {"low": low, "high": high}
    elif low or high:
        result["doseQuantity"] = low or high
    rate = _amount(ctx, detail, f["rate"], _units(ctx, detail, f["rate_units"]))
    if rate:
        result["rateQuantity"] = rate
    return result


def _dispense(ctx: Context, detail: Segment, f: dict[str, int]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    amount = _amount(ctx, detail, f["dispense"], _units(ctx, detail, f["dispense_units"]))
    if amount:
        result["quantity"] = amount
    refills = ctx.node(detail, f["refills"]).peek(1)
    if refills.isdigit():
        ctx.take(detail, f["refills"])
        result["numberOfRepeatsAllowed"] = int(refills)
    return result


def map_rde(ctx: Context) -> None:
    """RDE^O11: PID → Patient (create if missing), PV1 → Encounter, each ORC/RXE (with the
    TQ1 and RXR after the RXE) → MedicationRequest."""
    map_patient(ctx, ctx.required_segment("PID"), update=False)
    pv1 = ctx.message.segment("PV1")
    if pv1 is not None:
        map_encounter(ctx, pv1, update=False)
    orc: Segment | None = None
    rxe: Segment | None = None
    tq1: Segment | None = None
    rxr: Segment | None = None
    found = 0

    def flush() -> None:
        nonlocal found
        if rxe is not None:
            medication_request(ctx, orc, rxe, tq1, rxr)
            found += 1

    for seg in ctx.message.segment_list:
        if seg.name == "ORC":
            flush()
            orc, rxe, tq1, rxr = seg, None, None, None
        elif seg.name == "RXE":
            rxe = seg
        elif seg.name == "TQ1" and rxe is not None and tq1 is None:
            tq1 = seg
        elif seg.name == "RXR" and rxe is not None and rxr is None:
            rxr = seg
    flush()
    if not found:
        raise ctx.fail("RDE^O11 carries no RXE segment", Location("RXE"), 100)
