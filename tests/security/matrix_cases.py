"""The authorization matrix as data: who (role), does what (interaction), to whose data
(relationship), and the outcome the security model (docs/security.md) promises.

The expectations are written out by hand from the documented model, never computed from the
production ``Policy``: a test that derives its answers from the code under test cannot fail.
How to read a row: ``EXPECTED[role][interaction]`` is a tuple with one outcome per entry of
``RELATIONSHIPS``. Outcomes:

* ``"200"``, ``"201"``, ``"204"``, ``"403"``, ``"404"``, ``"400"``: the HTTP status (for
  ``batch``: the entry's status inside the batch-response);
* ``"200+"``: 200 and the target resource is in the result (entries, included resources, or a
  total of at least one for ``_summary=count``); ``"200-"``: 200 and it is not;
* ``"-"``: not applicable (no such request for that relationship).

To extend: add an interaction to ``INTERACTIONS`` (and its request in test_matrix.py), a
relationship to ``RELATIONSHIPS`` (and its target data in ``target``), or a role to ``ACTORS``;
then add the column/row for every role here. ``test_table_is_complete`` refuses gaps.
"""

from __future__ import annotations

from dataclasses import dataclass

# Patients: the patient user is p1; p2 is somebody else; p3 is somebody else too, on whom the
# relationship roles hold a break-the-glass grant. The relationship roles (physician, nurse,
# pharmacist; docs/security.md) work in department dept-a, where p1 has a current Encounter:
# for them p1 is a related patient and p2 an unrelated one.
OWN, OTHER, GLASS = "p1", "p2", "p3"
DEPARTMENT = "dept-a"
RELATIONSHIP_ROLES = ("physician", "nurse", "pharmacist")
HIV = ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "HIV")  # nobody is entitled to it
RELATIONSHIPS = ("own", "other", "audit", "labelled", "glass")
INTERACTIONS = (
    "read", "vread", "search", "history-instance", "history-type", "create", "update",
    "patch", "delete", "cond-create", "cond-update", "cond-delete", "transaction", "batch",
    "everything", "compartment", "include", "revinclude", "count")
WRITES = ("update", "patch", "delete", "cond-create", "cond-update", "cond-delete",
          "transaction")


@dataclass(frozen=True)
class ActorSpec:
    """How an actor's token looks: what ``/auth/login`` (users) or the client's registered
    scope (clients) gives it. Clients get wide scopes so their role is what is tested."""

    kind: str
    scope: str
    patient: str | None = None


ACTORS = {
    "administrator": ActorSpec("user", "user/*.cruds"),
    "physician": ActorSpec("user", "user/*.cruds"),
    "nurse": ActorSpec("user", "user/*.cruds"),
    "pharmacist": ActorSpec("user", "user/*.cruds"),
    "records_clerk": ActorSpec("user", "user/*.cruds"),
    "researcher": ActorSpec("user", "user/*.cruds"),
    "auditor": ActorSpec("user", "user/*.cruds"),
    "patient": ActorSpec("user", "patient/*.rs", patient=OWN),
    "integration": ActorSpec("client", "system/*.cruds"),
    "device": ActorSpec("client", "system/*.cruds"),
}


def target(relationship: str) -> str | None:
    """The patient whose data a relationship is about (None: the audit trail)."""
    return {"own": OWN, "other": OTHER, "labelled": OWN, "glass": GLASS}.get(relationship)


def label(relationship: str) -> tuple[str, str] | None:
    """The security label (system, code) the relationship's resources carry, if any."""
    return HIV if relationship == "labelled" else None


def read_obs(relationship: str) -> str:
    """The shared Observation the read-only cells look at (never written)."""
    return "obs-lab" if relationship == "labelled" else f"obs-{target(relationship)}"


def cell_id(role: str, interaction: str, relationship: str) -> str:
    """The Observation a write cell works on alone, so cells do not disturb each other."""
    return f"w-{role.replace('_', '-')}-{interaction}-{relationship}"


# Columns: own, other, audit, labelled, glass (RELATIONSHIPS).
# Full clinical access without relationship rules (administrator, integration): everything on
# Observation of any patient, nothing on AuditEvent (the trail is the server's; only auditors
# read it), nothing labelled (no entitlement: 404 on reads, absent from results, 403 on writes;
# a conditional delete finds nothing and answers 204).
_FULL: dict[str, tuple[str, ...]] = {
    "read": ("200", "200", "403", "404", "200"),
    "vread": ("200", "200", "403", "404", "200"),
    "search": ("200+", "200+", "403", "200-", "200+"),
    "history-instance": ("200+", "200+", "403", "404", "200+"),
    "history-type": ("200+", "200+", "403", "200-", "200+"),
    "create": ("201", "201", "403", "403", "201"),
    "update": ("200", "200", "403", "403", "200"),
    "patch": ("200", "200", "403", "404", "200"),
    "delete": ("200", "200", "403", "403", "200"),
    "cond-create": ("200", "200", "403", "403", "200"),
    "cond-update": ("200", "200", "403", "403", "200"),
    "cond-delete": ("200", "200", "403", "204", "200"),
    "transaction": ("200", "200", "403", "403", "200"),
    "batch": ("200", "200", "403", "404", "200"),
    "everything": ("200+", "200+", "-", "200-", "200+"),
    "compartment": ("200+", "200+", "-", "200-", "200+"),
    "include": ("200+", "200+", "403", "200-", "200+"),
    "revinclude": ("200+", "200+", "-", "200-", "200+"),
    "count": ("200+", "200+", "403", "200-", "200+"),
}

_NONE = ("403",) * len(RELATIONSHIPS)
WRITING = ("create", "update", "patch", "delete", "cond-create", "cond-update", "cond-delete",
           "transaction")


def refused(*interactions: str) -> dict[str, tuple[str, ...]]:
    """403 in every column for ``interactions``."""
    return dict.fromkeys(interactions, _NONE)


def column(row: tuple[str, ...], relationship: str, value: str) -> tuple[str, ...]:
    """``row`` with ``value`` in the column of ``relationship``."""
    at = RELATIONSHIPS.index(relationship)
    return (*row[:at], value, *row[at + 1:])


def only_audit(value: str) -> tuple[str, ...]:
    """403 everywhere but the audit trail's column."""
    return column(_NONE, "audit", value)


# Read and search only, no relationship rules (records clerk on Observation, researcher).
_READ_ONLY = {**_FULL, **refused(*WRITING)}

# A relationship role with cruds (physician): p1 (related) and p3 (break-the-glass grant) as
# for _FULL; the unrelated p2 (column "other") is invisible like labelled data (a compartment
# search, $everything's confinement and _include find nothing; $everything on the Patient
# itself is 404); no type history (not narrowed inside the query).
_UNRELATED = {
    "read": "404", "vread": "404", "search": "200-", "history-instance": "404",
    "create": "403", "update": "403", "patch": "404", "delete": "403", "cond-create": "403",
    "cond-update": "403", "cond-delete": "204", "transaction": "403", "batch": "404",
    "everything": "404", "compartment": "200-", "include": "200-", "revinclude": "200-",
    "count": "200-"}
_RELATED_FULL = {**{i: column(_FULL[i], "other", v) for i, v in _UNRELATED.items()},
                 **refused("history-type")}

# The auditor: rs on AuditEvent only; GET /fhir/AuditEvent[/id[/_history[/1]]] and a batch entry
# reading an event answer from the trail, the other AuditEvent interactions reach the router's
# store, which holds no AuditEvent resources.
_AUDITOR_TRAIL = {
    "read": "200", "vread": "200", "search": "200+", "history-instance": "200+",
    "history-type": "200-", "batch": "200", "everything": "-", "compartment": "-",
    "include": "400", "revinclude": "-", "count": "200+"}

# Interactions that have no request on the audit trail: 403 for roles refused on the type.
_NO_TRAIL = {i: only_audit("-") for i in ("everything", "compartment", "revinclude")}

EXPECTED: dict[str, dict[str, tuple[str, ...]]] = {
    "administrator": _FULL,
    "integration": _FULL,
    "physician": _RELATED_FULL,
    "nurse": {**_RELATED_FULL, **refused("delete", "cond-delete")},  # crus on clinical types
    "pharmacist": {**_RELATED_FULL, **refused(*WRITING)},  # cruds on medication types only
    "records_clerk": _READ_ONLY,
    "researcher": _READ_ONLY,
    "auditor": {i: only_audit(_AUDITOR_TRAIL.get(i, "403")) for i in INTERACTIONS},
    "patient": {  # rs, confined to p1's compartment, without its labelled part
        **refused(*INTERACTIONS),
        "read": ("200", "404", "403", "404", "404"),
        "vread": ("200", "404", "403", "404", "404"),
        "search": ("200+", "200-", "403", "200-", "200-"),
        "history-instance": ("200+", "404", "403", "404", "404"),
        "batch": ("200", "404", "403", "404", "404"),
        "everything": ("200+", "403", "-", "200-", "403"),
        "compartment": ("200+", "403", "-", "200-", "403"),
        "revinclude": _NO_TRAIL["revinclude"],
        "count": ("200+", "200-", "403", "200-", "200-"),
    },
    "device": {  # cru on Observation, Device, DeviceMetric: no search, no delete
        **refused(*INTERACTIONS),
        **{i: _FULL[i] for i in ("read", "vread", "history-instance", "create", "update",
                                 "patch", "transaction", "batch")},
        **_NO_TRAIL,
    },
}


def cells() -> list[tuple[str, str, str, str]]:
    """Every applicable (role, interaction, relationship, expected outcome)."""
    return [(role, interaction, relationship, row[interaction][i])
            for role, row in EXPECTED.items() for interaction in INTERACTIONS
            for i, relationship in enumerate(RELATIONSHIPS)
            if row[interaction][i] != "-"]
