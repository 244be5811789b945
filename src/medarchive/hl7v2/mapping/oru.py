"""ORU^R01 (unsolicited observation result) → DiagnosticReport with its Observations.

Each OBR opens a report (V2-to-FHIR "ORU_R01 to Bundle" map): its OBX segments become
Observations referenced from DiagnosticReport.result, ED/RP values become presentedForm, SPM
segments Specimens. Reports and results are conditional updates keyed by the filler order number,
because a lab resends the same report as it moves from preliminary to final or is corrected.
"""

from __future__ import annotations

from typing import Any

from medarchive.hl7v2.errors import Location
from medarchive.hl7v2.mapping import tables
from medarchive.hl7v2.mapping.common import concept, condition, token, ts, v2_coding
from medarchive.hl7v2.mapping.context import Context
from medarchive.hl7v2.mapping.encounter import map_encounter, message_identifier
from medarchive.hl7v2.mapping.observation import attachment, map_observation
from medarchive.hl7v2.mapping.order import order_ids, specimen, with_key
from medarchive.hl7v2.mapping.orm import ServiceOrder
from medarchive.hl7v2.mapping.patient import map_patient
from medarchive.hl7v2.message import Segment


class _Report:
    """A DiagnosticReport being assembled from one OBR and the segments after it."""

    def __init__(self, ctx: Context, obr: Segment, orc: Segment | None) -> None:
        ctx.mark(obr, 1)
        if orc is not None:
            ctx.mark(orc, 1)
        self.order = ServiceOrder(ctx, orc, obr, None)
        self.ids = order_ids(ctx, orc, obr, prefer="filler", local=f"OBR-{obr.sequence}")
        code = concept(ctx, ctx.node(obr, 4))
        if code is None:
            raise ctx.fail("OBR-4 universal service identifier is empty",
                           Location("OBR", obr.sequence, 4))
        self.resource: dict[str, Any] = {"resourceType": "DiagnosticReport",
                                         "identifier": with_key(self.ids)}
        status = tables.REPORT_STATUS.get(ctx.node(obr, 25).peek(1).upper())
        if status:
            ctx.take(obr, 25)
        self.resource["status"] = status or "unknown"
        category = v2_coding(ctx.node(obr, 24), 1, 74)
        if category:
            self.resource["category"] = [category]
        self.resource["code"] = code
        if ctx.patient:
            self.resource["subject"] = {"reference": ctx.patient}
        if ctx.encounter:
            self.resource["encounter"] = {"reference": ctx.encounter}
        self.effective = ts(ctx, ctx.node(obr, 7))
        end = ts(ctx, ctx.node(obr, 8))
        if self.effective and end:
            self.resource["effectivePeriod"] = {"start": self.effective, "end": end}
        elif self.effective:
            self.resource["effectiveDateTime"] = self.effective
        issued = ts(ctx, ctx.node(obr, 22), "instant")
        if issued:
            self.resource["issued"] = issued
        self.results: list[dict[str, str]] = []
        self.forms: list[dict[str, Any]] = []
        self.specimens: list[dict[str, str]] = []
        self.used_keys: set[str] = set()

    def finish(self, ctx: Context) -> None:
        self.resource["basedOn"] = [{"reference": self.order.finish(ctx, update=False)}]
        for key, items in (("specimen", self.specimens), ("result", self.results),
                           ("presentedForm", self.forms)):
            if items:
                self.resource[key] = items
        ctx.add(self.resource, key=f"DiagnosticReport|{token(self.ids.key)}", method="PUT",
                condition=condition(self.ids.key))


def map_oru(ctx: Context) -> None:
    """ORU^R01: PID → Patient (create if missing), PV1 → Encounter, each OBR → DiagnosticReport,
    OBX → Observation (or presentedForm for ED/RP), SPM → Specimen."""
    map_patient(ctx, ctx.required_segment("PID"), update=False)
    pv1 = ctx.message.segment("PV1")
    if pv1 is not None:
        map_encounter(ctx, pv1, update=False)
    orc: Segment | None = None
    report: _Report | None = None
    loose_keys: set[str] = set()
    loose_base = message_identifier(ctx, "OBX")
    for seg in ctx.message.segment_list:
        if seg.name == "ORC":
            orc = seg
        elif seg.name == "OBR":
            if report is not None:
                report.finish(ctx)
            report = _Report(ctx, seg, orc)
            orc = None
        elif seg.name == "OBX":
            _result(ctx, seg, report, loose_base, loose_keys)
        elif seg.name == "SPM" and report is not None:
            report.specimens.append({"reference": specimen(ctx, seg, report.ids.key)})
    if report is not None:
        report.finish(ctx)


def _result(ctx: Context, obx: Segment, report: _Report | None, loose_base: dict[str, Any],
            loose_keys: set[str]) -> None:
    value_type = ctx.node(obx, 2).peek(1).upper()
    if value_type in ("ED", "RP"):
        if report is not None:  # an attachment outside a report has no place: stays unmapped
            form = attachment(ctx, obx)
            if form:
                report.forms.append(form)
        return
    base = report.ids.key if report else loose_base
    full_url = map_observation(ctx, obx, ctx.following(obx), base=base,
                               used_keys=report.used_keys if report else loose_keys,
                               effective=report.effective if report else None)
    if full_url and report is not None:
        report.results.append({"reference": full_url})
