"""OBX (with its NTE) → FHIR Observation, and OBX ED/RP values → Attachment.

Results (ORU), order details (ORM/OML), immunization details (VXU), vital signs in ADT and
document bodies (MDM) all come as OBX segments, so the value-type rules live here once
(V2-to-FHIR "OBX[Observation]" map): OBX-2 picks value[x], OBX-6 units become UCUM, OBX-7 the
reference range, OBX-8 the interpretation (table 0078 → v3 ObservationInterpretation), OBX-11
the status (table 0085). A numeric value that is not a number is an AE, not a guess.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any
from urllib.parse import quote

from medarchive.hl7v2.errors import Location
from medarchive.hl7v2.mapping import tables
from medarchive.hl7v2.mapping.common import (
    concept,
    condition,
    entity_identifier,
    notes,
    number,
    organization_name,
    practitioner,
    quantity,
    token,
    ts,
)
from medarchive.hl7v2.mapping.context import Context, Node
from medarchive.hl7v2.message import Segment

_COMPARATORS = {"<": "<", "<=": "<=", ">": ">", ">=": ">="}
_RANGE = re.compile(r"\s*([<>]=?)?\s*([+-]?\d*\.?\d+)\s*"
                    r"(?:(?:-|\u2013|_|to|TO)\s*([+-]?\d*\.?\d+))?\s*")
_PREFIXED = re.compile(r"\s*(<=|>=|<|>)\s*([+-]?(\d+(\.\d*)?|\.\d+))\s*")
_SUBTYPES = {"PDF": "application/pdf", "JPEG": "image/jpeg", "JPG": "image/jpeg",
             "PNG": "image/png", "TIFF": "image/tiff", "GIF": "image/gif",
             "RTF": "application/rtf", "HTML": "text/html", "XML": "application/xml",
             "TEXT": "text/plain", "PLAIN": "text/plain", "OCTET-STREAM":
             "application/octet-stream", "DICOM": "application/dicom"}
TEXT_TYPES = frozenset({"ST", "TX", "FT"})
ATTACHMENT_TYPES = frozenset({"ED", "RP"})


def map_observation(ctx: Context, obx: Segment, following: list[Segment], *,
                    base: dict[str, Any], used_keys: set[str], effective: str | None = None,
                    update: bool = True) -> str | None:
    """OBX → Observation entry; returns its fullUrl (None for ED/RP, which are attachments).

    The Observation is identified by OBX-21 or, without it, by ``base`` (the report or order
    identifier) plus OBX-3 code and OBX-4 sub-id, so a corrected result replaces the earlier
    one (conditional update).
    """
    value_type = ctx.node(obx, 2).peek(1).upper()
    if value_type in ATTACHMENT_TYPES:
        return None
    ctx.take(obx, 1)
    ctx.take(obx, 2)
    observation: dict[str, Any] = {"resourceType": "Observation"}
    code = concept(ctx, ctx.node(obx, 3))
    if code is None:
        raise ctx.fail("OBX-3 observation identifier is empty",
                       Location("OBX", obx.sequence, 3))
    ident = entity_identifier(ctx, ctx.node(obx, 21), fallback=base.get("system"))
    if ident is None:
        local = code.get("coding", [{}])[0].get("code") or code.get("text", "")
        sub_id = ctx.take(obx, 4)
        key = f"{local}-{sub_id}" if sub_id else local
        if key in used_keys:
            key = f"{key}-{ctx.node(obx, 1).peek(1) or obx.sequence}"
        used_keys.add(key)
        ident = {"value": f"{base['value']}/{key}"}
        if "system" in base:
            ident = {"system": base["system"], **ident}
    observation["identifier"] = [ident]
    status = tables.OBSERVATION_STATUS.get(ctx.node(obx, 11).peek(1).upper())
    if status:
        ctx.take(obx, 11)
    observation["status"] = status or "unknown"
    observation["code"] = code
    if ctx.patient:
        observation["subject"] = {"reference": ctx.patient}
    if ctx.encounter:
        observation["encounter"] = {"reference": ctx.encounter}
    when = ts(ctx, ctx.node(obx, 14)) or effective
    if when:
        observation["effectiveDateTime"] = when
    issued = ts(ctx, ctx.node(obx, 19), "instant")
    if issued:
        observation["issued"] = issued
    performers = [r for r in (practitioner(ctx, node) for node in ctx.reps(obx, 16)) if r]
    organization = organization_name(ctx.node(obx, 23))
    if organization:
        performers.append({"display": organization})
    if performers:
        observation["performer"] = performers
    _value(ctx, obx, value_type, observation)
    interpretation = [_interpretation(ctx, node) for node in ctx.reps(obx, 8)]
    if any(interpretation):
        observation["interpretation"] = [i for i in interpretation if i]
    ranges = _reference_range(ctx, obx)
    if ranges:
        observation["referenceRange"] = ranges
    for field_no, key in ((17, "method"), (20, "bodySite")):
        value = concept(ctx, ctx.node(obx, field_no))
        if value:
            observation[key] = value
    annotations = notes(ctx, [s for s in following if s.name == "NTE"])
    if annotations:
        observation["note"] = annotations
    return ctx.add(observation, key=f"Observation|{token(ident)}",
                   method="PUT" if update else "POST", condition=condition(ident))


def _value(ctx: Context, obx: Segment, value_type: str, observation: dict[str, Any]) -> None:
    reps = list(ctx.reps(obx, 5))
    if not reps:
        return
    first = reps[0]
    if value_type in TEXT_TYPES:
        observation["valueString"] = "\n".join(node[1] for node in reps)
    elif value_type == "NM":
        observation["valueQuantity"] = _numeric(ctx, first, obx)
    elif value_type == "SN":
        _structured_numeric(ctx, first, obx, observation)
    elif value_type in ("CE", "CWE", "CNE", "CF"):
        value = concept(ctx, first)
        if value:
            observation["valueCodeableConcept"] = value
    elif value_type in ("DT", "TS", "DTM"):
        moment = ts(ctx, first)
        if moment is None:
            raise ctx.fail(f"OBX-5 is not a valid {value_type} value", first.location(1), 102)
        observation["valueDateTime"] = moment
    elif value_type == "TM":
        text = first[1]
        match = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(\.\d+)?([+-]\d{4})?", text)
        if not match or int(match.group(1)) > 23:
            raise ctx.fail("OBX-5 is not a valid TM value", first.location(1), 102)
        hh, mm, ss = match.group(1), match.group(2) or "00", match.group(3) or "00"
        observation["valueTime"] = f"{hh}:{mm}:{ss}"
    else:
        seps = obx.separators
        first.mark()
        observation["valueString"] = seps.component.join(
            obx.value(5, first.rep, c) for c in range(1, len(obx.fields[5][first.rep - 1]) + 1)
        ).strip(seps.component)


def _numeric(ctx: Context, node: Node, obx: Segment) -> dict[str, Any]:
    text = node[1]
    value = number(text)
    comparator = None
    if value is None:
        match = _PREFIXED.fullmatch(text)
        if not match:
            raise ctx.fail(f"OBX-5 {text!r} is not a number (value type NM)",
                           node.location(1), 102)
        comparator, value = _COMPARATORS[match.group(1)], number(match.group(2))
    result = quantity(value, _units(ctx, obx))  # type: ignore[arg-type]
    if comparator:
        result = {"value": result.pop("value"), "comparator": comparator, **result}
    return result


def _units(ctx: Context, obx: Segment) -> Node | None:
    node = ctx.node(obx, 6)
    return None if node.empty else node


def _structured_numeric(ctx: Context, node: Node, obx: Segment,
                        observation: dict[str, Any]) -> None:
    """SN: comparator^num1^separator/suffix^num2 → Quantity, Range or Ratio."""
    comparator, first, separator, second = node[1], node[2], node[3], node[4]
    one, two = number(first), number(second) if second else None
    if one is None or (second and two is None):
        raise ctx.fail("OBX-5 is not a valid SN value", node.location(2), 102)
    units = _units(ctx, obx)
    if two is not None and separator in ("-", ""):
        observation["valueRange"] = {"low": quantity(one, units), "high": quantity(two, units)}
    elif two is not None and separator in (":", "/"):
        observation["valueRatio"] = {"numerator": {"value": one},
                                     "denominator": {"value": two}}
    elif separator or comparator not in ("", "=", *_COMPARATORS):
        observation["valueString"] = f"{comparator}{first}{separator}{second}"
    else:
        value = quantity(one, units)
        if comparator in _COMPARATORS:
            value = {"value": value.pop("value"), "comparator": comparator, **value}
        observation["valueQuantity"] = value


def _interpretation(ctx: Context, node: Node) -> dict[str, Any] | None:
    code = node.peek(1)
    if code in tables.INTERPRETATION:
        for part in (1, 2, 3):
            node.mark(part)
        return {"coding": [{"system": tables.OBSERVATION_INTERPRETATION, "code": code}]}
    return concept(ctx, node)


def _reference_range(ctx: Context, obx: Segment) -> list[dict[str, Any]]:
    """OBX-7 → referenceRange: the text always, low/high when it reads as "a-b", "a to b",
    "<b" or ">a" (same units as the value)."""
    text = ctx.take(obx, 7)
    if not text:
        return []
    result: dict[str, Any] = {}
    match = _RANGE.fullmatch(text)
    units = _units(ctx, obx)
    if match:
        sign, low, high = match.groups()
        low_value, high_value = number(low), number(high) if high else None
        if sign and sign.startswith("<") and low_value is not None and high is None:
            result["high"] = quantity(low_value, units)
        elif sign and sign.startswith(">") and low_value is not None and high is None:
            result["low"] = quantity(low_value, units)
        elif not sign and low_value is not None and high_value is not None:
            result["low"] = quantity(low_value, units)
            result["high"] = quantity(high_value, units)
    result["text"] = text
    return [result]


def attachment(ctx: Context, obx: Segment) -> dict[str, Any] | None:
    """OBX-5 of type ED (encapsulated data) or RP (reference pointer) → Attachment.

    ED: contentType from ED-2/ED-3, data from ED-5 by ED-4 encoding (Base64 kept, Hex and
    ASCII re-encoded); RP: url from RP-1. A Base64 or Hex payload that does not decode is an AE.
    """
    value_type = ctx.node(obx, 2).peek(1).upper()
    node = ctx.node(obx, 5)
    result: dict[str, Any] = {}
    if value_type == "ED":
        kind, subtype, encoding, data = node.peek(2), node.peek(3), node.peek(4), node.peek(5)
        if data:
            result["contentType"] = content_type(kind, subtype)
            result["data"] = _encode(ctx, node, encoding.upper(), data)
            for part in (1, 2, 3, 4, 5):
                node.mark(part)
    elif value_type == "RP" and node.peek(1):
        result["contentType"] = content_type(node.peek(3), node.peek(4))
        result["url"] = quote(node[1], safe=":/?#[]@!$&'()*+,;=%-._~")
        for part in (2, 3, 4):
            node.mark(part)
    if not result:
        return None  # nothing to store: the OBX stays unmapped
    ctx.take(obx, 1)
    ctx.take(obx, 2)
    name = ctx.node(obx, 3)
    title_part = 9 if name.peek(9) else 2
    if name.peek(title_part):
        result["title"] = name[title_part]
    created = ts(ctx, ctx.node(obx, 14))
    if created:
        result["creation"] = created
    return result


def content_type(kind: str, subtype: str) -> str:
    """A MIME type from an ED/RP type (table 0191) and subtype (table 0291)."""
    kind_l, sub_u = kind.strip().lower(), subtype.strip().upper()
    if kind_l in ("application", "text", "image", "audio", "video", "multipart") and sub_u:
        return f"{kind_l}/{subtype.strip().lower()}"
    if sub_u in _SUBTYPES:
        return _SUBTYPES[sub_u]
    return tables.CONTENT_TYPES.get(kind.strip().upper(), "application/octet-stream")


def _encode(ctx: Context, node: Node, encoding: str, data: str) -> str:
    if encoding in ("BASE64", "B64"):
        compact = re.sub(r"\s+", "", data)
        try:
            base64.b64decode(compact, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ctx.fail("ED-5 is not valid Base64", node.location(5), 102) from exc
        return compact
    if encoding == "HEX":
        try:
            raw = bytes.fromhex(data)
        except ValueError as exc:
            raise ctx.fail("ED-5 is not valid hexadecimal", node.location(5), 102) from exc
        return base64.b64encode(raw).decode("ascii")
    return base64.b64encode(data.encode("utf-8")).decode("ascii")

