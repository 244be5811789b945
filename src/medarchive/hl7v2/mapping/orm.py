"""ORM^O01 and OML^O21 (general and laboratory orders) → FHIR ServiceRequest.

Each ORC/OBR pair is one order (V2-to-FHIR "ORC[ServiceRequest]" and "OBR[ServiceRequest]"
maps). The placer application owns the order, so it is matched by the placer order number and
updated conditionally: a later ORC-1 "CA" (cancel) or "SC" (status changed) for the same number
updates the same ServiceRequest. OBX segments in the order become supportingInfo Observations,
SPM segments (OML) Specimens. ORU reuses ``service_request`` for DiagnosticReport.basedOn.
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
    token,
    ts,
    v2_coding,
)
from medarchive.hl7v2.mapping.context import Context
from medarchive.hl7v2.mapping.encounter import map_encounter
from medarchive.hl7v2.mapping.observation import map_observation
from medarchive.hl7v2.mapping.order import (
    OrderIds,
    order_ids,
    order_status,
    reasons,
    requester,
    specimen,
    timing,
    with_key,
)
from medarchive.hl7v2.mapping.patient import map_patient
from medarchive.hl7v2.mapping.rde import medication_request
from medarchive.hl7v2.mapping.supply import nutrition_order, supply_request
from medarchive.hl7v2.message import Segment


class ServiceOrder:
    """A ServiceRequest being assembled from ORC + OBR (+ TQ1) and the segments after them."""

    def __init__(self, ctx: Context, orc: Segment | None, obr: Segment,
                 tq1: Segment | None) -> None:
        ctx.mark(obr, 1)
        self.ids: OrderIds = order_ids(ctx, orc, obr, prefer="placer",
                                       local=f"OBR-{obr.sequence}")
        code = concept(ctx, ctx.node(obr, 4))
        if code is None:
            raise ctx.fail("OBR-4 universal service identifier is empty",
                           Location("OBR", obr.sequence, 4))
        request: dict[str, Any] = {"resourceType": "ServiceRequest",
                                   "identifier": with_key(self.ids)}
        if orc is not None:
            group = entity_identifier(ctx, ctx.node(orc, 4).part(1),
                                      fallback=self.ids.key.get("system"))
            if group:
                request["requisition"] = group
        request["status"] = order_status(ctx, orc) or "unknown"
        request["intent"] = "order"
        category = v2_coding(ctx.node(obr, 24), 1, 74)
        if category:
            request["category"] = [category]
        when = timing(ctx, tq1, ctx.node(orc, 7) if orc is not None else None)
        priority = when.priority or tables.PRIORITY.get(ctx.node(obr, 5).peek(1).upper())
        if priority and not when.priority:
            ctx.take(obr, 5)
        if priority:
            request["priority"] = priority
        request["code"] = code
        if ctx.patient:
            request["subject"] = {"reference": ctx.patient}
        if ctx.encounter:
            request["encounter"] = {"reference": ctx.encounter}
        if when.start and when.end:
            request["occurrencePeriod"] = {"start": when.start, "end": when.end}
        elif when.start:
            request["occurrenceDateTime"] = when.start
        if when.as_needed:
            request["asNeededBoolean"] = True
        authored = ts(ctx, ctx.node(orc, 9)) if orc is not None else None
        if authored:
            request["authoredOn"] = authored
        who = requester(ctx, orc, obr)
        if who:
            request["requester"] = who
        why = reasons(ctx, obr, 31)
        if why:
            request["reasonCode"] = why
        annotations = notes(ctx, [*(ctx.following(orc) if orc is not None else []),
                                  *ctx.following(obr)])
        if annotations:
            request["note"] = annotations
        self.resource = request
        self.supporting: list[dict[str, str]] = []
        self.specimens: list[dict[str, str]] = []
        self.used_keys: set[str] = set()

    def finish(self, ctx: Context, *, update: bool = True) -> str:
        if self.specimens:
            self.resource["specimen"] = self.specimens
        if self.supporting:
            self.resource["supportingInfo"] = self.supporting
        return ctx.add(self.resource, key=f"ServiceRequest|{token(self.ids.key)}",
                       method="PUT" if update else "POST", condition=condition(self.ids.key))


def map_orders(ctx: Context) -> None:
    """ORM^O01 / OML^O21: PID → Patient (create if missing), PV1 → Encounter; per ORC the
    order detail: OBR → ServiceRequest (OBX → supportingInfo, SPM → Specimen), RXO →
    MedicationRequest, ODS → NutritionOrder, RQD → SupplyRequest."""
    map_patient(ctx, ctx.required_segment("PID"), update=False)
    pv1 = ctx.message.segment("PV1")
    if pv1 is not None:
        map_encounter(ctx, pv1, update=False)
    walk = _OrderWalk(ctx)
    for seg in ctx.message.segment_list:
        walk.step(seg)
    walk.flush()
    if not walk.count:
        kind = f"{ctx.message.message_type}^{ctx.message.trigger}"
        raise ctx.fail(f"{kind} carries no order detail (OBR, RXO, ODS or RQD after an ORC)",
                       Location("OBR"), 100)


class _OrderWalk:
    """Reads ORC groups in message order; each group's detail segment picks the resource."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.count = 0
        self.orc: Segment | None = None
        self.tq1: Segment | None = None
        self.service: ServiceOrder | None = None
        self.pharmacy: Segment | None = None
        self.route: Segment | None = None
        self.diet: list[Segment] = []

    def step(self, seg: Segment) -> None:
        ctx, name = self.ctx, seg.name
        if name == "ORC":
            self.flush()
            self.orc = seg
        elif name == "TQ1" and self.tq1 is None:
            self.tq1 = seg
        elif name == "OBR":
            self._finish_service()
            self.service = ServiceOrder(ctx, self.orc, seg, self.tq1)
            self.count += 1
        elif name == "OBX" and self.service is not None:
            full_url = map_observation(ctx, seg, ctx.following(seg), base=self.service.ids.key,
                                       used_keys=self.service.used_keys, update=False)
            if full_url:
                self.service.supporting.append({"reference": full_url})
        elif name == "SPM" and self.service is not None:
            self.service.specimens.append({"reference": specimen(ctx, seg,
                                                                 self.service.ids.key)})
        elif self.orc is None:
            return
        elif name == "RXO" and self.pharmacy is None:
            self.pharmacy = seg
        elif name == "RXR" and self.pharmacy is not None and self.route is None:
            self.route = seg
        elif name == "ODS":
            self.diet.append(seg)
        elif name == "RQD":
            supply_request(ctx, self.orc, seg)
            self.count += 1

    def _finish_service(self) -> None:
        if self.service is not None:
            self.service.finish(self.ctx)
            self.service = None

    def flush(self) -> None:
        self._finish_service()
        if self.orc is not None and self.pharmacy is not None:
            medication_request(self.ctx, self.orc, self.pharmacy, self.tq1, self.route)
            self.count += 1
        if self.orc is not None and self.diet:
            nutrition_order(self.ctx, self.orc, self.diet)
            self.count += 1
        self.orc = self.tq1 = self.pharmacy = self.route = None
        self.diet = []
