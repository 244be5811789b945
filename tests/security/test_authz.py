"""The authorization matrix: every role x permission x kind of resource, and the compartment."""

from __future__ import annotations

import pytest

from medarchive.errors import Forbidden
from medarchive.security.actor import Actor
from medarchive.security.authz import (
    ROLES,
    Policy,
    compartment_params,
    in_compartment,
    patient_refs,
)
from medarchive.security.scopes import parse_scopes

ALL_SCOPES = parse_scopes("user/*.cruds")[0]
TYPES = ("Observation", "Patient", "MedicationRequest", "AuditEvent", "Device")
# Expected role permissions, written out independently of the ROLES table.
EXPECTED = {
    "administrator": {"Observation": "cruds", "Patient": "cruds", "MedicationRequest": "cruds",
                      "AuditEvent": "", "Device": "cruds"},
    "physician": {"Observation": "cruds", "Patient": "cruds", "MedicationRequest": "cruds",
                  "AuditEvent": "", "Device": "rs"},
    "nurse": {"Observation": "crus", "Patient": "rs", "MedicationRequest": "crus",
              "AuditEvent": "", "Device": "rs"},
    "pharmacist": {"Observation": "rs", "Patient": "rs", "MedicationRequest": "cruds",
                   "AuditEvent": "", "Device": "rs"},
    "records_clerk": {"Observation": "rs", "Patient": "cruds", "MedicationRequest": "rs",
                      "AuditEvent": "", "Device": "rs"},
    "researcher": {t: ("" if t == "AuditEvent" else "rs") for t in TYPES},
    "auditor": {t: ("rs" if t == "AuditEvent" else "") for t in TYPES},
    "patient": {t: ("" if t == "AuditEvent" else "rs") for t in TYPES},
    "integration": {t: ("" if t == "AuditEvent" else "cruds") for t in TYPES},
    "device": {"Observation": "cru", "Patient": "", "MedicationRequest": "", "AuditEvent": "",
               "Device": "cru"},
}


def test_every_role_has_expectations() -> None:
    assert set(EXPECTED) == set(ROLES) - {"system"}


@pytest.mark.parametrize("role", sorted(EXPECTED))
@pytest.mark.parametrize("rtype", TYPES)
@pytest.mark.parametrize("letter", "cruds")
def test_matrix(role: str, rtype: str, letter: str) -> None:
    actor = Actor("user", "u", role, ALL_SCOPES, patient="p1")
    assert Policy().allowed(actor, letter, rtype) == (letter in EXPECTED[role][rtype])


def test_scopes_narrow_the_role() -> None:
    actor = Actor("user", "u", "administrator", parse_scopes("user/Observation.rs")[0])
    policy = Policy()
    assert policy.allowed(actor, "r", "Observation")
    assert not policy.allowed(actor, "c", "Observation")
    assert not policy.allowed(actor, "r", "Patient")
    with pytest.raises(Forbidden):
        policy.require(actor, "s", None)


def test_role_table_is_data() -> None:
    from medarchive.security.authz import Grant
    policy = Policy(roles={"viewer": (Grant(frozenset({"Patient"}), frozenset("r")),)})
    actor = Actor("user", "u", "viewer", ALL_SCOPES)
    assert policy.allowed(actor, "r", "Patient")
    assert not policy.allowed(actor, "r", "Observation")


def test_remembered_decisions_are_per_role_scopes_and_policy() -> None:
    """``Policy.allowed`` remembers its answers: keyed by role, scopes, letter and type, and
    per policy, so two actors or two role tables asked in turn never get each other's."""
    from medarchive.security.authz import Grant
    reader = Actor("user", "u", "physician", parse_scopes("user/Patient.rs")[0])
    writer = Actor("user", "u", "physician", ALL_SCOPES)
    clerk = Actor("user", "u", "records_clerk", ALL_SCOPES)
    policy = Policy()
    narrow = Policy(roles={"physician": (Grant(frozenset({"Patient"}), frozenset("r")),)})
    for _ in range(2):
        assert not policy.allowed(reader, "u", "Patient")
        assert policy.allowed(writer, "u", "Patient")
        assert policy.allowed(writer, "u", "Observation")
        assert not policy.allowed(clerk, "u", "Observation")
        assert not narrow.allowed(writer, "u", "Patient")
        assert narrow.allowed(writer, "r", "Patient")


def test_compartment() -> None:
    me = Actor("user", "pat", "patient", parse_scopes("patient/*.rs")[0], patient="p1")
    assert patient_refs({"resourceType": "Observation",
                         "subject": {"reference": "Patient/p1"}}) == {"p1"}
    assert in_compartment(me, {"resourceType": "Patient", "id": "p1"})
    assert not in_compartment(me, {"resourceType": "Patient", "id": "p2"})
    assert not in_compartment(me, {"resourceType": "Observation",
                                   "subject": {"reference": "Patient/p2"}})
    assert not in_compartment(me, {"resourceType": "Medication", "id": "m"})
    assert compartment_params(me, "Patient", {}) == [("_id", "p1")]
    assert compartment_params(me, "Observation", {"patient": 1, "subject": 1}) == [
        ("patient", "Patient/p1")]
    with pytest.raises(Forbidden):
        compartment_params(me, None, {})
    with pytest.raises(Forbidden):
        compartment_params(me, "Medication", {"code": 1})
    nobody = Actor("user", "x", "patient", parse_scopes("patient/*.rs")[0])
    with pytest.raises(Forbidden):
        compartment_params(nobody, "Patient", {})
    clinician = Actor("user", "d", "physician", ALL_SCOPES)
    assert compartment_params(clinician, "Observation", {}) is None
