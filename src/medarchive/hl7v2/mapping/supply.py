"""ORM^O01 diet (ODS) and supply (RQD) orders → FHIR NutritionOrder and SupplyRequest.

ORM^O01 carries one order detail segment after each ORC: OBR (service), RXO (pharmacy), ODS
(dietary) or RQD (supply). FHIR has a resource for each; these two are small and seldom used,
so they live together here rather than bloating the service-order mapper.
"""

from __future__ import annotations

from typing import Any

from medarchive.hl7v2.errors import Location
from medarchive.hl7v2.mapping.common import concept, condition, notes, number, quantity, token, ts
from medarchive.hl7v2.mapping.context import Context
from medarchive.hl7v2.mapping.order import order_ids, order_status, requester, with_key
from medarchive.hl7v2.message import Segment

_SUPPLY_STATUS = {"active": "active", "revoked": "cancelled", "completed": "completed",
                  "on-hold": "suspended", "entered-in-error": "entered-in-error"}


def nutrition_order(ctx: Context, orc: Segment, details: list[Segment]) -> str:
    """ORC + ODS → NutritionOrder (ODS-1 D diet → oralDiet.type, P preference →
    foodPreferenceModifier, S supplement → supplement; ODS-4 → instructions)."""
    ids = order_ids(ctx, orc, None, prefer="placer", local=f"ODS-{details[0].sequence}")
    order: dict[str, Any] = {"resourceType": "NutritionOrder", "identifier": with_key(ids),
                             "status": order_status(ctx, orc) or "unknown", "intent": "order"}
    if ctx.patient:
        order["patient"] = {"reference": ctx.patient}
    if ctx.encounter:
        order["encounter"] = {"reference": ctx.encounter}
    when = ts(ctx, ctx.node(orc, 9)) or ts(ctx, ctx.node(ctx.message.msh, 7))
    if when is None:
        raise ctx.fail("ORC-9 (or MSH-7) must give the time of a diet order",
                       Location("ORC", orc.sequence, 9))
    order["dateTime"] = when
    who = requester(ctx, orc, None)
    if who:
        order["orderer"] = who
    diet: dict[str, Any] = {}
    for ods in details:
        kind = ctx.node(ods, 1).peek(1).upper()
        codes = [c for c in (concept(ctx, node) for node in ctx.reps(ods, 3)) if c]
        text = "; ".join(node[1] for node in ctx.reps(ods, 4))
        if kind == "P":
            order.setdefault("foodPreferenceModifier", []).extend(codes)
        elif kind == "S":
            order.setdefault("supplement", []).extend(
                {"type": c, **({"instruction": text} if text else {})} for c in codes)
        else:
            diet.setdefault("type", []).extend(codes)
            if text:
                diet["instruction"] = "; ".join(filter(None, (diet.get("instruction"), text)))
        if kind in ("D", "P", "S"):
            ctx.take(ods, 1)
        if kind == "P" and text:
            order.setdefault("note", []).append({"text": text})
    if diet:
        order["oralDiet"] = diet
    annotations = notes(ctx, [n for d in details for n in ctx.following(d)])
    if annotations:
        order.setdefault("note", []).extend(annotations)
    return ctx.add(order, key=f"NutritionOrder|{token(ids.key)}", method="PUT",
                   condition=condition(ids.key))


def supply_request(ctx: Context, orc: Segment, rqd: Segment) -> str:
    """ORC + RQD → SupplyRequest: item RQD-2 (else RQD-3/4), quantity RQD-5 with RQD-6 units,
    occurrence RQD-10, deliverTo RQD-9."""
    ctx.mark(rqd, 1)
    ids = order_ids(ctx, orc, None, prefer="placer", local=f"RQD-{rqd.sequence}")
    item = next((c for c in (concept(ctx, ctx.node(rqd, n)) for n in (2, 3, 4)) if c), None)
    amount = number(ctx.node(rqd, 5).peek(1))
    if item is None or amount is None:
        raise ctx.fail("RQD needs an item code (RQD-2/3/4) and a quantity (RQD-5)",
                       Location("RQD", rqd.sequence, 2 if item is None else 5))
    ctx.take(rqd, 5)
    units = ctx.node(rqd, 6)
    request: dict[str, Any] = {
        "resourceType": "SupplyRequest", "identifier": with_key(ids),
        "status": _SUPPLY_STATUS.get(order_status(ctx, orc) or "", "unknown"),
        "itemCodeableConcept": item, "quantity": quantity(amount, None if units.empty else units),
    }
    needed = ts(ctx, ctx.node(rqd, 10))
    if needed:
        request["occurrenceDateTime"] = needed
    authored = ts(ctx, ctx.node(orc, 9))
    if authored:
        request["authoredOn"] = authored
    who = requester(ctx, orc, None)
    if who:
        request["requester"] = who
    place = concept(ctx, ctx.node(rqd, 9))
    if place:
        request["deliverTo"] = {"display": place.get("text") or place["coding"][0]["code"]}
    return ctx.add(request, key=f"SupplyRequest|{token(ids.key)}", method="PUT",
                   condition=condition(ids.key))
