"""FHIR R4 AuditEvents (§6.4) for MedArchive's interactions, with the DICOM/HL7 codes the
spec binds: who (the actor and its client), what (entities, the patients touched, the query),
when, from where, and the outcome. ``audit`` keeps them in the hash-chained trail."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from medarchive.security.actor import Actor
from medarchive.security.authz import purpose_concept, purpose_of

EVENT_TYPES = "http://terminology.hl7.org/CodeSystem/audit-event-type"
REST = "http://hl7.org/fhir/restful-interaction"
DICOM = "http://dicom.nema.org/resources/ontology/DCM"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
ACTIONS = {"create": "C", "read": "R", "vread": "R", "search": "E", "history": "R",
           "update": "U", "patch": "U", "delete": "D", "batch": "E", "transaction": "E",
           "operation": "E", "login": "E", "logout": "E", "token": "E", "admin": "U",
           "export": "R"}


def outcome_code(status: int) -> str:
    """AuditEvent.outcome (R4 ValueSet audit-event-outcome): 0 success, 4 minor failure
    (client error), 8 serious failure (server error)."""
    if status < 400:
        return "0"
    return "4" if status < 500 else "8"


def audit_event(actor: Actor, interaction: str, when: datetime, *, status: int,
                entities: Sequence[str] = (), query: str | None = None,
                detail: str | None = None, count: int | None = None,
                patients: Iterable[str] = ()) -> dict[str, Any]:
    """An R4 AuditEvent (§6.4) for one interaction by ``actor``. ``patients``: ids of the
    patients whose data the interaction returned or changed, each named by an entity of type
    1 (Person), role 1 (Patient) as IHE BALP does (searchable as ``patient``)."""
    subtype = ({"system": DICOM, "code": "110122", "display": "Login"}
               if interaction in ("login", "token") else
               {"system": DICOM, "code": "110123", "display": "Logout"}
               if interaction == "logout" else
               {"system": REST, "code": interaction})
    agent: dict[str, Any] = {
        "type": {"text": actor.kind},
        "who": {"identifier": {"value": actor.id}},
        "role": [{"text": actor.role}],
        "requestor": True}
    if actor.address:
        agent["network"] = {"address": actor.address, "type": "2"}
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": {"system": EVENT_TYPES, "code": "rest" if subtype["system"] == REST
                 else "110114", "display": "RESTful Operation"},
        "subtype": [subtype],
        "action": ACTIONS.get(interaction, "E"),
        "recorded": when.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "outcome": outcome_code(status),
        "agent": [agent],
        "source": {"observer": {"display": "MedArchive"}},
        "purposeOfEvent": [purpose_concept(purpose_of(actor))]}
    if actor.client_id:
        event["agent"].append({"who": {"identifier": {"value": actor.client_id}},
                               "type": {"text": "client"}, "requestor": False})
    items: list[dict[str, Any]] = [{"what": {"reference": ref}} for ref in entities]
    named = set(entities)
    for patient in sorted(set(patients)):
        ref = f"Patient/{patient}"
        person = {"type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
                  "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"}}
        if ref in named:
            for item in items:
                if item["what"]["reference"] == ref:
                    item.update(person)
        else:
            items.append({"what": {"reference": ref}, **person})
    if query is not None:
        items.append({"type": {"code": "2", "display": "System Object"},
                      "description": query[:2000]})
    if items:
        event["entity"] = items
    extra = []
    if detail:
        extra.append(detail[:500])
    if count is not None:
        extra.append(f"results={count}")
    extra.append(f"status={status}")
    event["outcomeDesc"] = "; ".join(extra)
    return event
