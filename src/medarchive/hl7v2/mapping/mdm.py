"""MDM^T02 (original document notification with content) → FHIR DocumentReference.

TXA describes the document and the OBX segments carry its body (V2-to-FHIR "MDM_T02 to Bundle"
map): text OBX (TX/ST/FT) lines are joined and stored as one text/plain attachment (data in
Base64), ED/RP OBX become further attachments. The document is matched by its unique document
number (TXA-12), so a resent notification updates rather than duplicates it.
"""

from __future__ import annotations

import base64
from typing import Any

from medarchive.hl7v2.errors import Location
from medarchive.hl7v2.mapping import tables
from medarchive.hl7v2.mapping.common import (
    application_system,
    condition,
    entity_identifier,
    practitioner,
    token,
    ts,
)
from medarchive.hl7v2.mapping.context import Context
from medarchive.hl7v2.mapping.encounter import map_encounter, message_identifier
from medarchive.hl7v2.mapping.observation import ATTACHMENT_TYPES, TEXT_TYPES, attachment
from medarchive.hl7v2.mapping.patient import map_patient
from medarchive.hl7v2.message import Segment


def map_mdm(ctx: Context) -> None:
    """MDM^T02: PID → Patient (create if missing), PV1 → Encounter, TXA + OBX →
    DocumentReference."""
    txa = ctx.required_segment("TXA")
    map_patient(ctx, ctx.required_segment("PID"), update=False)
    pv1 = ctx.message.segment("PV1")
    if pv1 is not None:
        map_encounter(ctx, pv1, update=False)
    ctx.mark(txa, 1)
    key = entity_identifier(ctx, ctx.node(txa, 12), fallback=application_system(ctx))
    if key is None or "system" not in key:
        key = message_identifier(ctx, "TXA")
    document: dict[str, Any] = {"resourceType": "DocumentReference", "masterIdentifier": key}
    availability = tables.DOCUMENT_AVAILABILITY.get(ctx.node(txa, 19).peek(1).upper())
    if availability:
        ctx.take(txa, 19)
    document["status"] = availability or "current"
    completion = tables.DOCUMENT_STATUS.get(ctx.node(txa, 17).peek(1).upper())
    if completion:
        ctx.take(txa, 17)
        document["docStatus"] = completion
    kind = ctx.take(txa, 2)
    if kind:
        document["type"] = {"coding": [{"system": tables.V2_TABLE.format(270), "code": kind}]}
    if ctx.patient:
        document["subject"] = {"reference": ctx.patient}
    created = ts(ctx, ctx.node(txa, 6), "instant") or ts(ctx, ctx.node(txa, 4), "instant")
    if created:
        document["date"] = created
    authors = [r for r in (practitioner(ctx, node) for field_no in (9, 5)
                           for node in ctx.reps(txa, field_no)) if r]
    if authors:
        document["author"] = authors
    authenticator = next((r for r in (practitioner(ctx, node) for field_no in (10, 22)
                                      for node in ctx.reps(txa, field_no)) if r), None)
    if authenticator:
        document["authenticator"] = authenticator
    label = tables.DOCUMENT_CONFIDENTIALITY.get(ctx.node(txa, 18).peek(1).upper())
    if label:
        ctx.take(txa, 18)
        document["securityLabel"] = [{"coding": [{"system": tables.CONFIDENTIALITY,
                                                  "code": label}]}]
    content = _content(ctx, txa)
    if not content:
        raise ctx.fail("MDM^T02 carries no document content in OBX-5", Location("OBX", 1, 5))
    document["content"] = content
    context: dict[str, Any] = {}
    if ctx.encounter:
        context["encounter"] = [{"reference": ctx.encounter}]
    activity = ts(ctx, ctx.node(txa, 4))
    if activity:
        context["period"] = {"start": activity}
    if context:
        document["context"] = context
    ctx.add(document, key=f"DocumentReference|{token(key)}", method="PUT",
            condition=condition(key))


def _content(ctx: Context, txa: Segment) -> list[dict[str, Any]]:
    """Text OBX lines → one text/plain attachment (title TXA-16); ED/RP OBX → attachments."""
    lines: list[str] = []
    attachments: list[dict[str, Any]] = []
    for obx in ctx.message.segments("OBX"):
        value_type = ctx.node(obx, 2).peek(1).upper()
        if value_type in TEXT_TYPES:
            ctx.take(obx, 1)
            ctx.take(obx, 2)
            lines += [node[1] for node in ctx.reps(obx, 5)]
        elif value_type in ATTACHMENT_TYPES:
            found = attachment(ctx, obx)
            if found:
                attachments.append({"attachment": found})
    if lines:
        text = "\n".join(lines)
        body: dict[str, Any] = {
            "contentType": "text/plain; charset=utf-8",
            "data": base64.b64encode(text.encode("utf-8")).decode("ascii"),
        }
        title = ctx.take(txa, 16)
        if title:
            body["title"] = title
        presentation = ctx.node(txa, 3).peek(1).upper()
        if presentation in ("TX", "FT", "TEXT"):
            ctx.take(txa, 3)
        attachments.insert(0, {"attachment": body})
    return attachments
