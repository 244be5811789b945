"""HL7 v2 data types as FHIR R4 data types: CX, EI, XPN, XAD, XTN, XCN, CE/CWE, TS, PL, XON.

Every message type carries the same data types, so their translation lives once here, following
the HL7 "V2-to-FHIR" implementation guide's data type maps (CX→Identifier, XPN→HumanName,
XAD→Address, XTN→ContactPoint, CWE→CodeableConcept, DTM→dateTime/instant). Each function reads a
``Node`` (so what it uses is recorded as mapped) and returns a FHIR JSON fragment or None.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from medarchive.hl7v2.mapping import tables
from medarchive.hl7v2.mapping.context import Context, Node
from medarchive.hl7v2.mapping.units import UCUM, to_ucum

EXT = "http://hl7.org/fhir/StructureDefinition/"
_TS = re.compile(r"(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(\.\d{1,6})?)?)?)?)?)?"
                 r"([+-]\d{4})?")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")

# --- identifiers ---------------------------------------------------------------------------


def system_for(ctx: Context, namespace: str, universal_id: str = "", id_type: str = "") -> (
        str | None):
    """Identifier.system for an assigning authority (HD: namespace^universal id^type).

    Order: ``MappingConfig.identifier_systems`` (by namespace, then universal id); an ISO
    universal id (a valid OID) → ``urn:oid:``; UUID → ``urn:uuid:``; URI/URL as written; a
    namespace that is an OID → ``urn:oid:``; SSA/NPI → their published systems; otherwise
    ``urn:medarchive:hl7:aa:<namespace>`` (percent-encoded).
    """
    systems = ctx.config.identifier_systems
    for key in (namespace, universal_id):
        if key and key in systems:
            return systems[key]
    kind = id_type.upper()
    if universal_id:
        if tables.is_oid(universal_id) and kind in ("ISO", ""):
            return f"urn:oid:{universal_id}"
        if tables.is_uuid(universal_id) and kind in ("UUID", "GUID", ""):
            return f"urn:uuid:{universal_id.lower()}"
        if kind in ("URI", "URL") and ":" in universal_id and " " not in universal_id:
            return universal_id
    name = namespace or universal_id
    if not name:
        return None
    if tables.is_oid(name):
        return f"urn:oid:{name}"
    if name.upper() in tables.WELL_KNOWN_AUTHORITIES:
        return tables.WELL_KNOWN_AUTHORITIES[name.upper()]
    return tables.LOCAL_AUTHORITY + quote(name, safe="")


def hd_system(ctx: Context, node: Node) -> str | None:
    """system_for an HD node (components or subcomponents 1-3)."""
    namespace, universal_id, kind = node.peek(1), node.peek(2), node.peek(3)
    system = system_for(ctx, namespace, universal_id, kind)
    if system:
        for part in (1, 2, 3):
            node.mark(part)
    return system


def facility_system(ctx: Context) -> str | None:
    """The sending facility (MSH-4) as the implied assigning authority, when configured."""
    if not ctx.config.facility_is_default_authority:
        return None
    return hd_system(ctx, ctx.node(ctx.message.msh, 4))


def application_system(ctx: Context) -> str | None:
    """The sending application (MSH-3): the implied namespace of order and document numbers."""
    return hd_system(ctx, ctx.node(ctx.message.msh, 3))


def identifier(ctx: Context, node: Node, *, type_code: str = "",
               fallback: str | None = None) -> dict[str, Any] | None:
    """CX → Identifier: CX-1 value, CX-4 system, CX-5 type (table 0203), CX-6 assigner,
    CX-7/CX-8 period. ``fallback`` is the system used when CX-4 is empty."""
    value = node[1]
    if not value:
        return None
    result: dict[str, Any] = {}
    system = hd_system(ctx, node.part(4)) or fallback
    if system:
        result["system"] = system
    result["value"] = value
    code = node[5] or type_code
    if code:
        result["type"] = {"coding": [{"system": tables.V2_TABLE.format(203), "code": code}]}
    assigner = node.part(6).peek(1)
    if assigner:
        node.part(6).mark(1)
        result["assigner"] = {"display": assigner}
    span = period(date_time(ctx, node, 7), date_time(ctx, node, 8))
    if span:
        result["period"] = span
    return result


def entity_identifier(ctx: Context, node: Node, *, type_code: str = "",
                      fallback: str | None = None) -> dict[str, Any] | None:
    """EI → Identifier: EI-1 value, EI-2..4 (namespace, universal id, type) the system."""
    value = node[1]
    if not value:
        return None
    namespace, universal_id, kind = node.peek(2), node.peek(3), node.peek(4)
    system = system_for(ctx, namespace, universal_id, kind)
    if system:
        for part in (2, 3, 4):
            node.mark(part)
    result: dict[str, Any] = {"system": system or fallback} if system or fallback else {}
    result["value"] = value
    if type_code:
        result["type"] = {"coding": [{"system": tables.V2_TABLE.format(203),
                                      "code": type_code}]}
    return result


def token(ident: dict[str, Any]) -> str:
    """``system|value`` for MappingResult keys."""
    return f"{ident.get('system', '')}|{ident['value']}"


def condition(ident: dict[str, Any]) -> str:
    """The search ``identifier=system|value`` (FHIR R4 §3.1.1.5.6 token; §3.1.1.5.7 escaping)."""
    def esc(text: str) -> str:
        text = re.sub(r"([\\|,$])", r"\\\1", text)
        return quote(text, safe=":/.-_~@!*'()")
    system = ident.get("system")
    return f"identifier={esc(system)}|{esc(ident['value'])}" if system else (
        f"identifier={esc(ident['value'])}")


# --- names, addresses, telecom ---------------------------------------------------------------


def human_name(ctx: Context, node: Node) -> dict[str, Any] | None:
    """XPN → HumanName (V2-to-FHIR XPN map): family with the FN surname parts as the
    humanname-own-/partner- extensions, given (XPN-2, XPN-3), prefix (XPN-5), suffix (XPN-4,
    XPN-6 degree, XPN-14), use (XPN-7, table 0200), period (XPN-10 or XPN-12/13)."""
    fam = node.part(1)
    name: dict[str, Any] = {}
    use = tables.NAME_USE.get(node.peek(7).upper())
    if use:
        node.mark(7)
        name["use"] = use
    if fam.peek(1):
        name["family"] = fam[1]
        extensions = [{"url": EXT + url, "valueString": fam[i]} for i, url in (
            (2, "humanname-own-prefix"), (3, "humanname-own-name"),
            (4, "humanname-partner-prefix"), (5, "humanname-partner-name")) if fam.peek(i)]
        if extensions:
            name["_family"] = {"extension": extensions}
    given = [v for v in (node[2], node[3]) if v]
    if given:
        name["given"] = given
    if node.peek(5):
        name["prefix"] = [node[5]]
    suffix = [v for v in (node[4], node[6], node[14]) if v]
    if suffix:
        name["suffix"] = suffix
    span = period(date_time(ctx, node.part(10), 1), date_time(ctx, node.part(10), 2)) or period(
        date_time(ctx, node, 12), date_time(ctx, node, 13))
    if span:
        name["period"] = span
    return name if set(name) - {"use", "period"} else None


def address(ctx: Context, node: Node) -> dict[str, Any] | None:
    """XAD → Address: XAD-1 (SAD street, with street name/house number extensions), XAD-2
    line, XAD-3 city, XAD-4 state, XAD-5 postal code, XAD-6 country, XAD-7 use/type (table
    0190), XAD-9 district, XAD-12 or XAD-13/14 period."""
    street = node.part(1)
    result: dict[str, Any] = {}
    kind = tables.ADDRESS_USE.get(node.peek(7).upper())
    if kind:
        node.mark(7)
        if kind[0]:
            result["use"] = kind[0]
        if kind[1]:
            result["type"] = kind[1]
    lines: list[str] = []
    line_ext: list[Any] = []
    if street.peek(1) or street.peek(2) or street.peek(3):
        lines.append(street[1] or " ".join(v for v in (street.peek(3), street.peek(2)) if v))
        parts = [{"url": EXT + url, "valueString": street[i]}
                 for i, url in ((2, "iso21090-ADXP-streetName"),
                                (3, "iso21090-ADXP-houseNumber")) if street.peek(i)]
        line_ext.append({"extension": parts} if parts else None)
    if node.peek(2):
        lines.append(node[2])
        line_ext.append(None)
    if lines:
        result["line"] = lines
        if any(line_ext):
            result["_line"] = line_ext
    for part, key in ((3, "city"), (4, "state"), (5, "postalCode"), (6, "country")):
        if node.peek(part):
            result[key] = node[part]
    district = node.part(9)
    county = district.peek(2) or district.peek(1)
    if county:
        district.mark(1)
        district.mark(2)
        result["district"] = county
    span = period(date_time(ctx, node.part(12), 1), date_time(ctx, node.part(12), 2)) or period(
        date_time(ctx, node, 13), date_time(ctx, node, 14))
    if span:
        result["period"] = span
    return result if set(result) - {"use", "type", "period"} else None


def contact_point(ctx: Context, node: Node, default_use: str | None = None) -> (
        dict[str, Any] | None):
    """XTN → ContactPoint: value from XTN-4 (e-mail/URL), XTN-12, XTN-5..8 or XTN-1; system
    and use from XTN-2 (table 0201) and XTN-3 (table 0202); XTN-13/14 period; XTN-18 rank."""
    use_code, equipment = node.peek(2).upper(), node.peek(3).upper()
    system, use = tables.TELECOM_USE.get(use_code, (None, None))
    if use_code in tables.TELECOM_USE:
        node.mark(2)
    by_equipment = tables.TELECOM_EQUIPMENT.get(equipment)
    if by_equipment:
        node.mark(3)
        system = system or by_equipment[0]
        use = by_equipment[1] or use
    electronic = system in ("email", "url") or use_code == "NET"
    value = _telecom_value(node, electronic)
    if not value:
        return None
    if not system:
        system = ("email" if "@" in value else "url") if electronic else "phone"
    result: dict[str, Any] = {"system": system, "value": value}
    if use or default_use:
        result["use"] = use or default_use
    rank = node.peek(18)
    if rank.isdigit() and int(rank) > 0:
        node.mark(18)
        result["rank"] = int(rank)
    span = period(date_time(ctx, node, 13), date_time(ctx, node, 14))
    if span:
        result["period"] = span
    return result


def _telecom_value(node: Node, electronic: bool) -> str:
    """E-mail/URL from XTN-4; a phone number from XTN-12, else XTN-5..8 (XTN-1, the same
    number in the pre-v2.3 free-text form, then counts as read), else XTN-1."""
    if electronic:
        return node[4] or node[1]
    if node.peek(12):
        return node[12]
    local = node[7]
    if local:
        area, country, extension = node[6], node[5], node[8]
        value = (f"+{country} " if country else "") + (f"({area}) " if area else "") + local
        if extension:
            value += f" ext. {extension}"
        node.mark(1)
        return value
    return node[1] or node[4]


# --- codes -------------------------------------------------------------------------------------

_TRIPLES = ((1, 2, 3, 7, 14), (4, 5, 6, 8, 17), (10, 11, 12, 13, 20))


def concept(ctx: Context, node: Node, table: int = 0) -> dict[str, Any] | None:
    """CE/CWE/CNE → CodeableConcept: the identifier, alternate and second alternate triples
    (with versions and coding-system OIDs) as codings, CWE-9 (or the first text) as text, and a
    translation from ``MappingConfig.concept_maps`` appended as an extra coding. ``table``: the
    HL7 table assumed for a code written without a coding system."""
    codings: list[dict[str, Any]] = []
    texts: list[str] = []
    for code_no, text_no, system_no, version_no, oid_no in _TRIPLES:
        code, text = node[code_no], node[text_no]
        if not code:
            if text:
                texts.append(text)
            continue
        name = node[system_no]
        oid = node.peek(oid_no)
        coding: dict[str, Any] = {}
        if oid and tables.is_oid(oid):
            node.mark(oid_no)
            coding["system"] = f"urn:oid:{oid}"
        elif name:
            coding["system"] = tables.code_system_uri(name)
        elif table and code_no == 1:
            coding["system"] = tables.V2_TABLE.format(table)
        if node.peek(version_no):
            coding["version"] = node[version_no]
        coding["code"] = code
        if text:
            coding["display"] = text
        codings.append(coding)
        mapped = ctx.config.concept_maps.get((name, code)) or ctx.config.concept_maps.get(
            (coding.get("system", ""), code))
        if mapped:
            translated = {"system": mapped[0], "code": mapped[1]}
            if mapped[2]:
                translated["display"] = mapped[2]
            codings.append(translated)
    original = node[9]
    result: dict[str, Any] = {}
    if codings:
        result["coding"] = codings
    if original or texts:
        result["text"] = original or texts[0]
    return result or None


def coded(node: Node, part: int, table: dict[str, Any]) -> Any:
    """The FHIR value of a table-coded part, or None (the part then stays unmapped)."""
    value = table.get(node.peek(part).upper())
    if value is not None:
        node.mark(part)
    return value


def v2_coding(node: Node, part: int, table_no: int) -> dict[str, Any] | None:
    """An IS/ID value as a CodeableConcept in the HL7 v2 table's code system."""
    code = node[part]
    if not code:
        return None
    return {"coding": [{"system": tables.V2_TABLE.format(table_no), "code": code}]}


# --- time ---------------------------------------------------------------------------------------


def convert_ts(text: str, zone: Any, kind: str = "dateTime") -> str | None:
    """An HL7 DTM/TS/DT value as a FHIR ``date``, ``dateTime`` or ``instant`` (R4 §2.24.0.1).

    Precision is kept (YYYY, YYYY-MM, YYYY-MM-DD); a time gets the offset written in the
    message or, when absent, that of ``zone`` at that moment; hours without minutes or seconds
    are completed with zeros because FHIR times need seconds. ``instant`` needs at least
    minutes. Returns None for anything that is not a real date and time.
    """
    match = _TS.fullmatch(text.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        moment = datetime(int(year), int(month or 1), int(day or 1), int(hour or 0),
                          int(minute or 0), int(second or 0))
    except ValueError:
        return None
    if kind == "date" or hour is None:
        if kind == "instant" or (hour is not None and kind != "date"):
            return None
        return "-".join(p for p in (year, month, day) if p)
    if kind == "instant" and minute is None:
        return None
    if offset:
        sign = -1 if offset[0] == "-" else 1
        delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])) * sign
        if int(offset[3:5]) > 59:
            return None
    else:
        delta = zone.utcoffset(moment) or timedelta(0)
    minutes = int(delta.total_seconds()) // 60
    if not -12 * 60 <= minutes <= 14 * 60:
        return None
    sign_text = "-" if minutes < 0 else "+"
    zone_text = f"{sign_text}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (fraction or "") + zone_text


def date_time(ctx: Context, node: Node, part: int, kind: str = "dateTime") -> str | None:
    """Part ``part`` of ``node`` as a FHIR date/dateTime/instant; marked only when valid."""
    value = convert_ts(node.peek(part), ctx.zone, kind)
    if value is not None:
        node.mark(part)
    return value


def ts(ctx: Context, node: Node, kind: str = "dateTime") -> str | None:
    """A TS/DTM field at ``node`` (TS-1 time; the TS-2 precision of v2.3-2.5 is implied)."""
    value = date_time(ctx, node, 1, kind)
    if value is not None and node.peek(2):
        node.mark(2)
    return value


def period(start: str | None, end: str | None) -> dict[str, str] | None:
    span = {k: v for k, v in (("start", start), ("end", end)) if v}
    return span or None


# --- people, places, quantities --------------------------------------------------------------


def practitioner(ctx: Context, node: Node) -> dict[str, Any] | None:
    """XCN → a Reference to a Practitioner, created once per message by identifier
    (XCN-1 with XCN-9 authority: conditional create) and named from XCN-2..7, XCN-21."""
    if node.empty:
        return None
    fam = node.part(2)
    name: dict[str, Any] = {}
    if fam.peek(1):
        name["family"] = fam[1]
    given = [v for v in (node[3], node[4]) if v]
    if given:
        name["given"] = given
    if node.peek(6):
        name["prefix"] = [node[6]]
    suffix = [v for v in (node[5], node[7], node[21]) if v]
    if suffix:
        name["suffix"] = suffix
    display = " ".join([*name.get("prefix", []), *name.get("given", []),
                        name.get("family", ""), *name.get("suffix", [])]).strip()
    value = node[1]
    if not value:
        return {"display": display} if display else None
    system = hd_system(ctx, node.part(9)) or facility_system(ctx)
    ident: dict[str, Any] = {"system": system, "value": value} if system else {"value": value}
    if node.peek(13):
        ident["type"] = {"coding": [{"system": tables.V2_TABLE.format(203), "code": node[13]}]}
    resource: dict[str, Any] = {"resourceType": "Practitioner", "identifier": [ident]}
    if name:
        resource["name"] = [name]
    full_url = ctx.add(resource, key=f"Practitioner|{token(ident)}",
                       condition=condition(ident))
    reference = {"reference": full_url}
    if display:
        reference["display"] = display
    return reference


def location_text(node: Node) -> str | None:
    """PL → a readable location: facility, building, floor, point of care, room, bed, text."""
    facility = node.part(4)
    parts = [facility[1] or facility[2], node[7], node[8], node[1], node[2], node[3], node[9]]
    text = ", ".join(p for p in parts if p)
    return text or None


def organization_name(node: Node) -> str | None:
    """XON-1 organisation name (for a display-only Reference)."""
    return node[1] or None


def number(text: str) -> int | float | None:
    """An NM value as a JSON number (None when it is not one)."""
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        return None
    if "." in text:
        return float(text)
    return int(text)


def quantity(value: int | float, unit: Node | None) -> dict[str, Any]:
    """A Quantity with the unit of a CE/CWE node as UCUM where it can be told (units.py)."""
    result: dict[str, Any] = {"value": value}
    if unit is not None and not unit.empty:
        code, text, system = unit[1], unit[2], unit[3]
        result["unit"] = text or code
        ucum = to_ucum(code, system)
        if ucum:
            result["system"] = UCUM
            result["code"] = ucum
    return result


def notes(ctx: Context, segments: list[Any]) -> list[dict[str, str]]:
    """NTE → Annotation (NTE-3 comment lines joined; NTE-1 set id is structural)."""
    out = []
    for nte in segments:
        ctx.mark(nte, 1)
        lines = [n[1] for n in ctx.reps(nte, 3)]
        if lines:
            out.append({"text": "\n".join(lines)})
    return out
