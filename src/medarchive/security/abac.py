"""Attribute-based access: security labels, relationships, purpose of use and break-the-glass,
decided here and called by ``security.guard`` (docs/security.md "Labels, relationships,
purpose of use, break-the-glass").

For each interaction the guard opens a ``Decision`` for its actor: the actor's profile
(entitlements, department and practitioner attributes, active break-glass grants) and, for
the relationship roles, the set of patients it may see. Searches are narrowed inside the query:
``_security:not=<every protecting label the actor is not entitled to>`` and, for relationship
roles, a chain from the Patient compartment parameters to the related patients, themselves a
``_has`` clause on their Encounters and CareTeams that the database answers (chains and
``_has`` of the query get the same conditions inside); loaded versions (reads, vreads,
history, ``_include``/``_revinclude``) pass ``visible``; every commit passes ``check_change``.
A break-glass grant adds its patient to the allowed set and lets ``R`` (not ``V`` and not the
sensitivity categories) through for that patient only; an interaction that used a grant is
audited with purpose of use ETREAT and the BTG security label.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass, field, replace
from typing import Any

from medarchive.errors import Forbidden
from medarchive.fhir.compartments import compartment_links
from medarchive.fhir.search.parse import parse_search
from medarchive.fhir.search.query import (
    AllOf,
    AnyOf,
    Chain,
    Clause,
    Compartment,
    Has,
    OfType,
    Predicate,
    SearchQuery,
    TokenValue,
)
from medarchive.security.access import Access, Profile
from medarchive.security.actor import Actor, current_actor
from medarchive.security.authz import (
    RELATIONSHIP_ROLES,
    patient_refs,
    purpose_concept,
    relationship_links,
    require_purpose,
)
from medarchive.security.granular import constrained
from medarchive.security.labels import ACT_CODE, LABELS, hidden_predicate, protected_labels
from medarchive.security.relations import Relations
from medarchive.store.base import Change, Version

LINK = "patient"  # the Encounter and CareTeam parameter naming their patient
NOBODY = "!"  # never a valid id: the patient list of an actor related to no patient
BTG = {"system": ACT_CODE, "code": "BTG", "display": "break the glass"}
RESTRICTED_ONLY = frozenset({"R"})  # what a break-glass grant lets through
NESTING = (AnyOf, AllOf, OfType, Chain, Has)  # clauses ``_guarded`` may rewrite


@dataclass
class Decision:
    """One actor's access facts for one interaction (read once, lazily)."""

    actor: Actor
    profile: Profile
    relationship: bool  # confined to related patients
    _patients: frozenset[str] | None = None
    used_break_glass: bool = False
    current_labels: dict[tuple[str, str], bool] = field(default_factory=dict)  # by resource
    related: Callable[[Profile], frozenset[str]] = field(default=lambda p: frozenset())

    @property
    def hidden(self) -> frozenset[str]:
        """Protecting labels this actor is not entitled to."""
        return LABELS - self.profile.entitled

    def patients(self) -> frozenset[str]:
        """Patients it may see: related ones and those of active break-glass grants."""
        if self._patients is None:
            self._patients = self.related(self.profile) | self.profile.break_glass
        return self._patients

    def opened_by_glass(self, patients: Iterable[str]) -> bool:
        """True when a break-glass grant covers one of ``patients``."""
        return bool(set(patients) & self.profile.break_glass)


_DECISION: ContextVar[Decision | None] = ContextVar("medarchive_decision", default=None)


class Abac:
    """The attribute-based rules for one server."""

    def __init__(self, access: Access, relations: Relations, spec: Any, *,
                 relationship_required: bool = True, break_glass_minutes: int = 60,
                 relationship_roles: frozenset[str] = RELATIONSHIP_ROLES) -> None:
        self.access = access
        self.relationship_roles = relationship_roles  # security.roles: the role table's
        self.relations = relations
        self.spec = spec
        self.relationship_required = relationship_required
        self.break_glass_minutes = break_glass_minutes

    # -- the decision of the current interaction --------------------------------------------

    def _new(self, actor: Actor) -> Decision | None:
        if actor.kind == "system":
            return None
        relationship = (self.relationship_required and actor.role in self.relationship_roles
                        and not actor.patient_scoped)
        return Decision(actor, self.access.profile(actor.id), relationship,
                        related=self.relations.related)

    def enter(self, actor: Actor) -> Token[Decision | None]:
        """Open the decision for ``actor``, shared by every check of one interaction until
        ``leave``."""
        return _DECISION.set(self._new(actor))

    def leave(self, token: Token[Decision | None]) -> None:
        """Close the decision ``enter`` opened."""
        _DECISION.reset(token)

    def decision(self) -> Decision | None:
        """The current actor's decision (the interaction's, or a fresh one)."""
        actor = current_actor()
        found = _DECISION.get()
        if found is not None and found.actor is actor:
            return found
        return self._new(actor)

    # -- checks ---------------------------------------------------------------------------

    def authorize(self, actor: Actor, name: str, id: str | None) -> None:
        """Purpose of use; no type/system history for relationship roles (history is not
        narrowed inside the query)."""
        require_purpose(actor)
        decision = self.decision()
        if decision is None:
            return
        if decision.relationship and name == "history" and id is None:
            raise Forbidden("type and system history are not available to roles that need a "
                            "relationship with the patient")

    def hides(self) -> bool:
        """True when some stored versions may be invisible to the current actor (labels,
        relationships, or granular scopes, ``security.granular``)."""
        decision = self.decision()
        return decision is not None and bool(decision.hidden or decision.relationship
                                             or constrained(decision.actor.scopes))

    def visible(self, version: Version) -> bool:
        """True when the current actor may see this loaded version."""
        decision = self.decision()
        if decision is None:
            return True
        if version.deleted:
            return not decision.relationship
        resource = version.resource()
        labels = protected_labels(resource) & decision.hidden
        if not labels and not decision.relationship:
            return True
        patients = patient_refs(resource)
        if labels and not _labels_open(decision, labels, patients):
            return False
        if decision.relationship and patients:
            allowed = patients & decision.patients()
            if not allowed:
                return False
            if allowed <= decision.profile.break_glass - decision.related(decision.profile):
                decision.used_break_glass = True
        if labels:
            decision.used_break_glass = True
        return True

    def current_labels_allow(self, version: Version) -> bool:
        """For an older version (vread, history): the labels of the resource's current
        version govern every version, so an unlabelled old version of a resource labelled
        since is hidden like the current one. True for the current version itself."""
        decision = self.decision()
        if decision is None or not decision.hidden:
            return True
        key = (version.resource_type, version.id)
        if key not in decision.current_labels:
            current = self.relations.store.read(*key)
            allowed = True
            if current is not None and not current.deleted:
                resource = current.resource()
                labels = protected_labels(resource) & decision.hidden
                allowed = not labels or _labels_open(decision, labels, patient_refs(resource))
            decision.current_labels[key] = allowed
        return decision.current_labels[key]

    def check_change(self, change: Change, read: Callable[[str, str], Version | None]) -> None:
        """403 unless the current actor may write ``change``: labels it is entitled to,
        a patient it is related to, and a current version it can see."""
        decision = self.decision()
        if decision is None:
            return
        if change.resource is not None:
            patients = patient_refs(change.resource)
            labels = protected_labels(change.resource) & decision.hidden
            if labels and not (labels <= RESTRICTED_ONLY and decision.opened_by_glass(patients)):
                raise Forbidden("not entitled to write resources labelled "
                                + ", ".join(sorted(labels)))
            if labels:  # only a grant lets this label through
                decision.used_break_glass = True
            new_patient = change.resource_type == "Patient" and not change.expected_version
            if decision.relationship and patients and not new_patient:
                allowed = patients & decision.patients()
                if not allowed:
                    raise Forbidden("no relationship with this patient (break the glass to "
                                    "gain access in an emergency)")
                if allowed <= decision.profile.break_glass - decision.related(decision.profile):
                    decision.used_break_glass = True
        if change.expected_version:
            current = read(change.resource_type, change.id)
            if current is not None and not self.visible(current):
                raise Forbidden("not allowed to change this resource")

    # -- narrowing inside the query ---------------------------------------------------------

    def narrow(self, query: SearchQuery) -> SearchQuery:
        """``query`` with the label and relationship clauses of the current actor ANDed in."""
        decision = self.decision()
        if decision is None:
            return query
        extra: list[Clause] = []
        glass = decision.profile.break_glass
        hidden = decision.hidden
        confined = _confined(query)  # before its _has is rewritten below
        nested = hidden_predicate(decision.profile.entitled)
        if (nested is not None or decision.relationship) and any(
                isinstance(c, NESTING) for c in query.predicates):
            query = replace(query, predicates=tuple(
                self._guarded(c, nested, decision) for c in query.predicates))
        if glass and "R" in hidden:  # R is seen for break-glass patients only
            others = hidden_predicate(decision.profile.entitled | RESTRICTED_ONLY)
            if others is not None:
                extra.append(others)
            not_r = Predicate("_security", "token", (TokenValue(
                "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R"),),
                modifier="not")
            opened = self._patient_clause(query.resource_type, query.types, glass)
            extra.append(AnyOf((not_r, opened)) if opened is not None else not_r)
            decision.used_break_glass = True
        else:
            found = hidden_predicate(decision.profile.entitled)
            if found is not None:
                extra.append(found)
        if decision.relationship:
            if confined is None or confined not in decision.patients():
                ids = decision.patients() if query.resource_type is None else ()
                clause = self._patient_clause(query.resource_type, query.types, ids,
                                              self._related(decision))
                if clause is not None:
                    extra.append(clause)
                if query.resource_type is None:
                    members = set(self.spec.compartment_types("Patient")) | {"Patient"}
                    types = tuple(t for t in (query.types or sorted(members)) if t in members)
                    query = replace(query, types=types or ("Patient",))
            if (confined in glass or (confined is None and glass)) \
                    and confined not in decision.related(decision.profile):
                decision.used_break_glass = True
        if not extra:
            return query
        return replace(query, predicates=(*query.predicates, *extra))

    def _guarded(self, clause: Clause, label: Predicate | None, decision: Decision) -> Clause:
        """``clause`` with the conditions of its chains and ``_has`` (R4 §3.1.1.5.11-12)
        confined like the search itself, so they never test hidden resources."""
        if isinstance(clause, AnyOf | AllOf):
            return type(clause)(tuple(self._guarded(c, label, decision)
                                      for c in clause.clauses))
        if isinstance(clause, OfType):
            return OfType(clause.resource_type, self._guarded(clause.clause, label, decision))
        if not isinstance(clause, Chain | Has):
            return clause
        rtype = clause.target_type if isinstance(clause, Chain) else clause.source_type
        parts = [] if clause.clause is None else [self._guarded(clause.clause, label, decision)]
        if label is not None:
            parts.append(label)
        if decision.relationship and rtype is not None:  # by id: keeps the SQL shallow
            confined = self._patient_clause(rtype, (), decision.patients())
            if confined is not None:
                parts.append(confined)
        inner = None if not parts else parts[0] if len(parts) == 1 else AllOf(tuple(parts))
        if isinstance(clause, Chain):
            return Chain(clause.param, clause.target_type, inner or clause.clause)
        return Has(clause.source_type, clause.param, inner)

    def _related(self, decision: Decision) -> Clause:
        """The patients ``decision``'s actor is related to, as a clause on Patient rows that
        the database answers itself: ``_has`` on the Encounters and CareTeams that relate them
        (``Relations.searches``), or an active break-glass grant."""
        parts: list[Clause] = []
        for rtype, params in self.relations.searches(decision.profile):
            found = parse_search(self.spec, rtype, params, default_count=1,
                                 max_count=1).query.predicates
            parts.append(Has(rtype, LINK, found[0] if len(found) == 1 else AllOf(found)))
        glass = sorted(decision.profile.break_glass)
        if glass or not parts:
            parts.append(_ids(glass))
        return parts[0] if len(parts) == 1 else AnyOf(tuple(parts))

    def _patient_clause(self, rtype: str | None, types: Sequence[str], ids: Iterable[str],
                        who: Clause | None = None) -> Clause | None:
        """"In the compartment of one of the patients ``who`` selects (default: ``ids``)"
        for type ``rtype``; for several types (``rtype`` None: ``types``, or every type) by
        the compartments of ``ids``. None for a type that is not patient data. Measured
        (benchmarks/abac.py): a chain to ``who`` is ~10x faster than OR-ed references."""
        chosen = who if who is not None else _ids(ids)
        if rtype == "Patient":
            return chosen
        if rtype is None:
            links = compartment_links(self.spec, "Patient", types or None)
            return AnyOf(tuple(Compartment("Patient", i, links, owner=True)
                               for i in sorted(ids) or [NOBODY]))
        params = relationship_links(self.spec, rtype)
        if not params:
            return None
        found = tuple(Chain(p, "Patient", chosen) for p in params)
        return found[0] if len(found) == 1 else AnyOf(found)

    # -- audit ----------------------------------------------------------------------------

    def mark(self, event: dict[str, Any]) -> dict[str, Any]:
        """An interaction that used a break-glass grant: purpose ETREAT and label BTG."""
        decision = _DECISION.get()
        if decision is not None and decision.used_break_glass:
            event["purposeOfEvent"] = [purpose_concept("ETREAT")]
            event.setdefault("meta", {})["security"] = [BTG]
        return event


def _labels_open(decision: Decision, labels: frozenset[str] | set[str],
                 patients: set[str]) -> bool:
    """True when protecting ``labels`` the actor is not entitled to are still let through:
    only ``R``, by a break-glass grant for one of ``patients``."""
    return labels <= RESTRICTED_ONLY and decision.opened_by_glass(patients)


def _ids(ids: Iterable[str]) -> Predicate:
    """Patients by id (``_id``); none at all when ``ids`` is empty."""
    return Predicate("_id", "id", tuple(TokenValue(None, i) for i in sorted(ids) or [NOBODY]))


def _confined(query: SearchQuery) -> str | None:
    """The patient a query is already confined to (compartment search, ``$everything``)."""
    for clause in query.predicates:
        if isinstance(clause, Compartment) and clause.compartment == "Patient":
            return clause.id
        if isinstance(clause, AnyOf) and clause.clauses:
            head = clause.clauses[0]
            if isinstance(head, Compartment) and head.compartment == "Patient" and all(
                    isinstance(c, Has) and c.clause == head for c in clause.clauses[1:]):
                return head.id
    return None
