"""Authorization decisions: role permissions (data) intersected with SMART scopes, plus the
patient compartment for patient-scoped actors.

An interaction needs one permission letter (SMART v2 ``cruds``: create, read, update, delete,
search) on a resource type. It is allowed when the actor's role grants the letter on the type
AND one of the token's scopes does (SMART App Launch 2.0 §3.0.2: scopes only ever narrow what
the user may do); a granular scope (``?category=...``) counts when its condition is supported on
the type, and the guard confines the interaction to the resources it matches
(``security.granular``). Patient-scoped actors are further confined to one patient's compartment
(R4 §3.3 Compartments, CompartmentDefinition patient): reads and writes are checked on the
resource, searches are narrowed by a predicate inside the query (``compartment_params``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from medarchive.errors import Forbidden
from medarchive.security.actor import Actor
from medarchive.security.scopes import Scope

ALL = "*"
CLINICAL = frozenset({
    "Observation", "Condition", "Procedure", "Encounter", "AllergyIntolerance", "CarePlan",
    "CareTeam", "DiagnosticReport", "DocumentReference", "Immunization", "ImagingStudy",
    "MedicationRequest", "MedicationAdministration", "MedicationStatement",
    "MedicationDispense", "ServiceRequest", "Specimen", "Goal", "ClinicalImpression",
    "FamilyMemberHistory", "Composition", "QuestionnaireResponse", "RiskAssessment",
    "NutritionOrder", "Communication", "Flag"})
DEMOGRAPHIC = frozenset({"Patient", "RelatedPerson", "Practitioner", "PractitionerRole",
                         "Organization", "Location", "HealthcareService", "Coverage",
                         "Appointment", "Schedule", "Slot", "Encounter", "EpisodeOfCare"})
MEDICATION = frozenset({"Medication", "MedicationRequest", "MedicationDispense",
                        "MedicationAdministration", "MedicationStatement"})
DEVICE_DATA = frozenset({"Observation", "Device", "DeviceMetric"})
RESTRICTED = frozenset({"AuditEvent"})  # the trail is written by the server, never by clients


class InsufficientScope(Forbidden):
    """403 because the token's scopes do not cover the request (the role would allow it, or
    the token has no resource scope at all): RFC 6750 §3.1 ``insufficient_scope``."""

    challenge = 'Bearer realm="medarchive", error="insufficient_scope"'


@dataclass(frozen=True, slots=True)
class Grant:
    """``letters`` (from cruds) on ``types`` (``*``: every type outside RESTRICTED)."""

    types: frozenset[str] | str
    letters: frozenset[str]

    def allows(self, letter: str, resource_type: str | None) -> bool:
        if letter not in self.letters:
            return False
        if self.types == ALL:
            return resource_type not in RESTRICTED
        return resource_type is not None and resource_type in self.types


def _g(types: frozenset[str] | str, letters: str) -> Grant:
    return Grant(types, frozenset(letters))


# Role permissions as data: edit this table (or pass another to Policy) to change them.
ROLES: Mapping[str, tuple[Grant, ...]] = {
    "administrator": (_g(ALL, "cruds"),),
    "physician": (_g(CLINICAL | DEMOGRAPHIC, "cruds"), _g(ALL, "rs")),
    "nurse": (_g(CLINICAL, "crus"), _g(ALL, "rs")),
    "pharmacist": (_g(MEDICATION, "cruds"), _g(ALL, "rs")),
    "records_clerk": (_g(DEMOGRAPHIC, "cruds"), _g(ALL, "rs")),
    "researcher": (_g(ALL, "rs"),),
    "auditor": (_g(frozenset({"AuditEvent"}), "rs"),),
    "patient": (_g(ALL, "rs"),),
    "integration": (_g(ALL, "cruds"),),
    "device": (_g(DEVICE_DATA, "cru"),),
    "system": (_g(ALL, "cruds"),),
}

# Which search parameter puts a resource of each type in the patient compartment, for
# narrowing searches; types not listed cannot be searched by patient-scoped actors.
_REFERENCE_FIELDS = ("subject", "patient", "beneficiary", "individual")
MAX_DECIDED = 4096  # remembered Policy.allowed answers (role x scopes x letter x type)


@dataclass(frozen=True)
class Policy:
    """The authorization policy: role table in, allow/deny decisions out."""

    roles: Mapping[str, tuple[Grant, ...]] = field(default_factory=lambda: ROLES)
    # security.granular.Granular: which granular scopes are supported on which types (the
    # guard installs its own); without one a granular scope grants nothing
    granular: Any = None
    # (role, scopes, letter, type) -> allowed: a pure function of the key, asked on every
    # request (a lookup is a quarter of working it out); the table starts afresh when full
    _decided: dict[tuple[str, tuple[Scope, ...], str, str | None], bool] = field(
        default_factory=dict, compare=False, repr=False)

    def allowed(self, actor: Actor, letter: str, resource_type: str | None) -> bool:
        """True when both the role and a scope grant ``letter`` on ``resource_type``."""
        key = (actor.role, actor.scopes, letter, resource_type)
        found = self._decided.get(key)
        if found is None:
            grants = self.roles.get(actor.role, ())
            found = any(g.allows(letter, resource_type) for g in grants) and any(
                s.allows(letter, resource_type) and self._supported(s, resource_type)
                for s in actor.scopes)
            if len(self._decided) >= MAX_DECIDED:
                self._decided.clear()
            self._decided[key] = found
        return found

    def _supported(self, scope: Scope, resource_type: str | None) -> bool:
        """A plain scope, or a granular one whose condition is supported on the type (SMART
        App Launch 2.0 §3.0.2: a condition the server cannot apply grants nothing)."""
        if not scope.query:
            return True
        return self.granular is not None and bool(self.granular.supports(scope, resource_type))

    def require(self, actor: Actor, letter: str, resource_type: str | None) -> None:
        """Raise 403 unless ``allowed`` (SMART: insufficient scope)."""
        if not self.allowed(actor, letter, resource_type):
            what = resource_type or "all resource types"
            name = {"c": "create", "r": "read", "u": "update", "d": "delete",
                    "s": "search"}[letter]
            grants = self.roles.get(actor.role, ())
            if any(g.allows(letter, resource_type) for g in grants):
                raise InsufficientScope(f"the token's scopes do not allow {name} on {what}")
            raise Forbidden(f"{actor.kind} {actor.id!r} (role {actor.role}) may not {name} "
                            f"{what}")


def patient_refs(resource: Mapping[str, Any]) -> set[str]:
    """The patient ids a resource is about: its own id for a Patient, else the Patient
    references in its subject/patient/beneficiary/individual elements."""
    if resource.get("resourceType") == "Patient":
        return {str(resource.get("id"))}
    found: set[str] = set()
    for key in _REFERENCE_FIELDS:
        value = resource.get(key)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, dict):
                ref = item.get("reference")
                if isinstance(ref, str) and ref.startswith("Patient/"):
                    found.add(ref.split("/")[1])
    return found


def in_compartment(actor: Actor, resource: Mapping[str, Any]) -> bool:
    """True unless the actor is patient-scoped and the resource is outside its patient's
    compartment (R4 CompartmentDefinition patient, approximated by the fields above)."""
    if not actor.patient_scoped:
        return True
    return actor.patient is not None and actor.patient in patient_refs(resource)


def compartment_params(actor: Actor, resource_type: str | None,
                       search_params: Mapping[str, Any]) -> list[tuple[str, str]] | None:
    """Extra search parameters confining a search to the actor's patient; None when the
    actor is not patient-scoped; 403 when the search cannot be confined."""
    if not actor.patient_scoped:
        return None
    if actor.patient is None:
        raise Forbidden("a patient-scoped actor without a patient context may not search")
    if resource_type is None:
        raise Forbidden("patient-scoped actors may only search one resource type")
    if resource_type == "Patient":
        return [("_id", actor.patient)]
    for name in ("patient", "subject", "beneficiary"):
        if name in search_params:
            return [(name, f"Patient/{actor.patient}")]
    raise Forbidden(f"{resource_type} cannot be confined to a patient compartment")


# -- attribute-based rules: relationships and purpose of use (docs/security.md) -------------

# Roles that need a relationship with a patient (department, care team, encounter, or a
# break-the-glass grant) to see the patient's compartment, when the setting
# ``access_relationship_required`` is on. They are also the roles that may break the glass.
RELATIONSHIP_ROLES = frozenset({"physician", "nurse", "pharmacist"})
CURRENT_ENCOUNTER = ("arrived", "triaged", "in-progress", "onleave")

PURPOSE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PURPOSES = {  # v3-PurposeOfUse codes a token may carry
    "TREAT": "treatment", "ETREAT": "emergency treatment", "HPAYMT": "healthcare payment",
    "HOPERAT": "healthcare operations", "HRESCH": "healthcare research",
    "PUBHLTH": "public health", "PATRQT": "patient requested",
    "HSYSADMIN": "system administration"}
DEFAULT_PURPOSE = {"physician": "TREAT", "nurse": "TREAT", "pharmacist": "TREAT",
                   "device": "TREAT", "researcher": "HRESCH", "patient": "PATRQT",
                   "system": "HSYSADMIN"}
ROLE_PURPOSES: Mapping[str, frozenset[str]] = {  # roles limited to some purposes
    "researcher": frozenset({"HRESCH"}),
    "patient": frozenset({"PATRQT"}),
}


def purpose_of(actor: Actor) -> str:
    """The actor's purpose of use: the token's, else its role's default (HOPERAT)."""
    return actor.purpose or DEFAULT_PURPOSE.get(actor.role, "HOPERAT")


def purpose_allowed(role: str, purpose: str) -> bool:
    """True when ``purpose`` is a known purpose of use that ``role`` may act under."""
    return purpose in PURPOSES and purpose in ROLE_PURPOSES.get(role, frozenset(PURPOSES))


def require_purpose(actor: Actor) -> None:
    """403 unless the actor's role may act under its purpose of use (researchers: HRESCH)."""
    purpose = purpose_of(actor)
    if not purpose_allowed(actor.role, purpose):
        raise Forbidden(f"role {actor.role} may not act with purpose of use {purpose}")


def purpose_concept(code: str) -> dict[str, Any]:
    """A purpose of use as a CodeableConcept (AuditEvent.purposeOfEvent)."""
    return {"coding": [{"system": PURPOSE_SYSTEM, "code": code,
                        "display": PURPOSES.get(code, code)}]}


def relationship_links(spec: Any, resource_type: str) -> tuple[str, ...]:
    """The search parameters linking ``resource_type`` into the Patient compartment (R4
    CompartmentDefinition patient); empty for types that are not patient data."""
    try:
        params = spec.compartment_params("Patient", resource_type)
    except KeyError:
        return ()
    return tuple(p for p in params if p != "{def}")
