"""PID, PD1 and NK1 → the FHIR Patient every HL7 v2 message is about.

All message types identify their patient the same way, so the rules are here once: the patient
is matched by an identifier *with* its assigning authority (PID-3, CX-4; the sending facility
MSH-4 standing in when CX-4 is empty and the config allows it), written as a conditional
request so a replayed message finds the same Patient. ADT messages carry the authoritative
demographics and update the Patient (conditional PUT); other messages only create it when it
does not exist yet (ifNoneExist), never overwriting what ADT wrote.
"""

from __future__ import annotations

from typing import Any

from medarchive.hl7v2.errors import Location
from medarchive.hl7v2.mapping import tables
from medarchive.hl7v2.mapping.common import (
    EXT,
    address,
    concept,
    condition,
    contact_point,
    convert_ts,
    date_time,
    facility_system,
    human_name,
    identifier,
    organization_name,
    practitioner,
    token,
    ts,
)
from medarchive.hl7v2.mapping.context import Context
from medarchive.hl7v2.message import Segment

SSN = "http://hl7.org/fhir/sid/us-ssn"


def patient_identifiers(ctx: Context, pid: Segment) -> tuple[list[dict[str, Any]],
                                                               dict[str, Any]]:
    """All identifiers of PID-2/3/4/18/19/20 and the one the Patient is matched by.

    The match key is the first PID-3 identifier of type MR with an explicit assigning
    authority, else the first with one, else (if allowed) the first with the sending facility
    as authority. Raises an AE (table 0357 code 101 at PID-3) when there is none.
    """
    fallback = facility_system(ctx)
    found: list[dict[str, Any]] = []
    ranked: list[tuple[int, int, dict[str, Any]]] = []
    for order, (field_no, type_code) in enumerate(((3, ""), (2, ""), (4, ""))):
        for node in ctx.reps(pid, field_no):
            explicit = not node.part(4).empty
            ident = identifier(ctx, node, type_code=type_code, fallback=fallback)
            if ident is None:
                continue
            found.append(ident)
            if "system" in ident:
                is_mr = node.peek(5).upper() == "MR"
                rank = (0 if explicit else 2) + (0 if is_mr else 1) + 4 * min(order, 1)
                ranked.append((rank, len(ranked), ident))
    for node in ctx.reps(pid, 18):
        ident = identifier(ctx, node, type_code="AN", fallback=fallback)
        if ident:
            found.append(ident)
    ssn = ctx.take(pid, 19)
    if ssn:
        found.append({"system": SSN, "value": ssn, "type": {"coding": [
            {"system": tables.V2_TABLE.format(203), "code": "SS"}]}})
    licence = ctx.node(pid, 20)
    if licence.peek(1):
        dl: dict[str, Any] = {"type": {"coding": [
            {"system": tables.V2_TABLE.format(203), "code": "DL"}]}, "value": licence[1]}
        expiry = date_time(ctx, licence, 3)
        if expiry:
            dl["period"] = {"end": expiry}
        found.append(dl)
    if not ranked:
        raise ctx.fail("PID-3 holds no patient identifier with an assigning authority "
                       "(CX-4), and the sending facility (MSH-4) cannot stand in",
                       Location("PID", pid.sequence, 3, 1, 4))
    return found, min(ranked, key=lambda r: (r[0], r[1]))[2]


def map_patient(ctx: Context, pid: Segment, *, update: bool) -> str:
    """PID → Patient (V2-to-FHIR "PID[Patient]" map); returns the entry's fullUrl.

    ``update`` (ADT): conditional update ``PUT Patient?identifier=sys|val``; otherwise
    conditional create with ``ifNoneExist``.
    """
    ctx.mark(pid, 1)
    identifiers, match = patient_identifiers(ctx, pid)
    patient: dict[str, Any] = {"resourceType": "Patient", "identifier": identifiers}
    names = [n for n in (human_name(ctx, node) for node in ctx.reps(pid, 5)) if n]
    names += [n for n in (human_name(ctx, node) for node in ctx.reps(pid, 9)) if n]
    if names:
        patient["name"] = names
    extensions: list[dict[str, Any]] = []
    maiden = ctx.node(pid, 6).part(1)
    if maiden.peek(1):
        extensions.append({"url": EXT + "patient-mothersMaidenName", "valueString": maiden[1]})
    _birth(ctx, pid, patient)
    gender = tables.GENDER.get(ctx.node(pid, 8).peek(1).upper())
    if gender:
        ctx.take(pid, 8)
        patient["gender"] = gender
    addresses = [a for a in (address(ctx, node) for node in ctx.reps(pid, 11)) if a]
    if addresses:
        patient["address"] = addresses
    telecom = [t for t in (contact_point(ctx, node, "home") for node in ctx.reps(pid, 13)) if t]
    telecom += [t for t in (contact_point(ctx, node, "work") for node in ctx.reps(pid, 14)) if t]
    if telecom:
        patient["telecom"] = telecom
    language = concept(ctx, ctx.node(pid, 15))
    if language:
        patient["communication"] = [{"language": language, "preferred": True}]
    marital = concept(ctx, ctx.node(pid, 16), 2)
    if marital:
        patient["maritalStatus"] = marital
    religion = concept(ctx, ctx.node(pid, 17), 6)
    if religion:
        extensions.append({"url": EXT + "patient-religion", "valueCodeableConcept": religion})
    birthplace = ctx.take(pid, 23)
    if birthplace:
        extensions.append({"url": EXT + "patient-birthPlace",
                           "valueAddress": {"text": birthplace}})
    _multiple_birth(ctx, pid, patient)
    _death(ctx, pid, patient)
    if extensions:
        patient["extension"] = extensions
    _primary_care(ctx, patient)
    contacts = [c for c in (next_of_kin(ctx, nk1) for nk1 in ctx.message.segments("NK1")) if c]
    if contacts:
        patient["contact"] = contacts
    key = token(match)
    full_url = ctx.add(patient, key=f"Patient|{key}", method="PUT" if update else "POST",
                       condition=condition(match))
    ctx.patient = full_url
    ctx.patient_identifiers = [key] + [token(i) for i in identifiers
                                       if "system" in i and token(i) != key]
    return full_url


def _birth(ctx: Context, pid: Segment, patient: dict[str, Any]) -> None:
    node = ctx.node(pid, 7)
    day = convert_ts(node.peek(1), ctx.zone, "date")
    if not day:
        return
    patient["birthDate"] = day
    moment = ts(ctx, node)
    if moment and "T" in moment:
        patient["_birthDate"] = {"extension": [{"url": EXT + "patient-birthTime",
                                                "valueDateTime": moment}]}
    node.mark(1)


def _multiple_birth(ctx: Context, pid: Segment, patient: dict[str, Any]) -> None:
    flag = ctx.node(pid, 24).peek(1).upper()
    order = ctx.node(pid, 25).peek(1)
    if order.isdigit() and flag != "N":
        ctx.take(pid, 25)
        ctx.mark(pid, 24)
        patient["multipleBirthInteger"] = int(order)
    elif flag in ("Y", "N"):
        ctx.take(pid, 24)
        patient["multipleBirthBoolean"] = flag == "Y"


def _death(ctx: Context, pid: Segment, patient: dict[str, Any]) -> None:
    moment = ts(ctx, ctx.node(pid, 29))
    flag = ctx.node(pid, 30).peek(1).upper()
    if moment:
        patient["deceasedDateTime"] = moment
        if flag == "Y":
            ctx.take(pid, 30)
    elif flag in ("Y", "N"):
        ctx.take(pid, 30)
        patient["deceasedBoolean"] = flag == "Y"


def _primary_care(ctx: Context, patient: dict[str, Any]) -> None:
    """PD1-3 primary facility and PD1-4 primary care provider → generalPractitioner."""
    pd1 = ctx.message.segment("PD1")
    if pd1 is None:
        return
    refs = []
    for node in ctx.reps(pd1, 4):
        ref = practitioner(ctx, node)
        if ref:
            refs.append(ref)
    for node in ctx.reps(pd1, 3):
        name = organization_name(node)
        if name:
            refs.append({"display": name})
    if refs:
        patient["generalPractitioner"] = refs


def next_of_kin(ctx: Context, nk1: Segment) -> dict[str, Any] | None:
    """NK1 → Patient.contact: name, relationship (NK1-3, NK1-7), address, telecom (NK1-5
    home, NK1-6 work), period (NK1-8/9), organisation (NK1-13), gender (NK1-15)."""
    ctx.mark(nk1, 1)
    contact: dict[str, Any] = {}
    relationship = [c for c in (concept(ctx, ctx.node(nk1, 3), 63),
                                      concept(ctx, ctx.node(nk1, 7), 131))
                    if c]
    if relationship:
        contact["relationship"] = relationship
    name = next((n for n in (human_name(ctx, node) for node in ctx.reps(nk1, 2)) if n), None)
    if name:
        contact["name"] = name
    telecom = [t for t in (contact_point(ctx, node, "home") for node in ctx.reps(nk1, 5)) if t]
    telecom += [t for t in (contact_point(ctx, node, "work") for node in ctx.reps(nk1, 6)) if t]
    if telecom:
        contact["telecom"] = telecom
    home = next((a for a in (address(ctx, node) for node in ctx.reps(nk1, 4)) if a), None)
    if home:
        contact["address"] = home
    gender = tables.GENDER.get(ctx.node(nk1, 15).peek(1).upper())
    if gender:
        ctx.take(nk1, 15)
        contact["gender"] = gender
    organization = organization_name(ctx.node(nk1, 13))
    if organization:
        contact["organization"] = {"display": organization}
    start, end = date_time(ctx, ctx.node(nk1, 8), 1), date_time(ctx, ctx.node(nk1, 9), 1)
    if start or end:
        contact["period"] = {k: v for k, v in (("start", start), ("end", end)) if v}
    details = {"name", "telecom", "address", "organization"}
    return contact if details & set(contact) else None
