"""Break-the-glass: a clinician's time-limited emergency access to one patient's record.

A user of a relationship role (``Abac.relationship_roles``, from security.roles) states a
reason (at least ``access.MIN_REASON`` characters) and gets ``Abac.break_glass_minutes`` of
access to the patient's compartment, including resources labelled ``R`` (not ``V``, not the
sensitivity categories). The grant is always audited (an AuditEvent with purpose of use ETREAT
and the BTG security label, success or refusal), raises an alert that auditors see on
``/admin/break-glass`` (plus a WARNING log line and the alert hooks) and expires by itself:
it is only honoured while ``expires`` lies ahead of the injected clock.
"""

from __future__ import annotations

from typing import Any

from medarchive.errors import FhirError, Forbidden, NotFound
from medarchive.security.abac import BTG
from medarchive.security.access import BreakGlass
from medarchive.security.actor import Actor
from medarchive.security.audit_events import audit_event
from medarchive.security.authz import purpose_concept


def break_glass(security: Any, actor: Actor, patient_id: str, reason: str) -> BreakGlass:
    """Grant ``actor`` emergency access to ``patient_id``; 403 for other roles, 404 for an
    unknown patient, 400 without a reason. Audited either way."""
    abac = security.guard.abac
    status, grant, detail = 200, None, reason
    try:
        if abac is None or security.access is None:
            raise Forbidden("break-the-glass is not available on this server")
        if actor.kind != "user" or actor.role not in abac.relationship_roles:
            raise Forbidden(f"role {actor.role} may not break the glass (for: "
                            f"{', '.join(sorted(abac.relationship_roles))})")
        current = abac.relations.store.read("Patient", patient_id)
        if current is None or current.deleted:
            raise NotFound(f"Patient/{patient_id} not found")
        grant = security.access.break_glass(actor.id, actor.role, patient_id, reason,
                                            abac.break_glass_minutes, actor.address)
        detail = f"break-the-glass {grant.id} until {grant.expires}: {grant.reason}"
        return grant
    except FhirError as exc:
        status, detail = exc.status, f"break-the-glass refused: {exc}"
        raise
    finally:
        event = audit_event(actor, "break-glass", security.trail.now(), status=status,
                            entities=[f"Patient/{patient_id}"], detail=detail,
                            patients=[patient_id] if grant is not None else ())
        event["purposeOfEvent"] = [purpose_concept("ETREAT")]
        event["meta"] = {"security": [BTG]}
        security.trail.record(event)
