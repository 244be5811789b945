"""Granular SMART scopes: which resources of a type a token's scopes grant a permission on, as
a search clause (SMART App Launch 2.0 §3.0.2 "Finer-grained resource constraints using search
parameters").

A scope ``context/Type.letters?name=value[&name=value]`` grants its letters only on the
resources of ``Type`` matching that search: every condition must hold (R4 §3.1.1.5.5, repeated
parameters are ANDed), several scopes granting the same letter on a type are alternatives
(their union, "Scope Equivalence"), and one plain scope among them grants the whole type. The
condition of one scope on one type is parsed by the search parser into the clause a search
with those parameters would have, so SQL answers it inside the query (the guard ANDs it into
searches, counts, compartments, ``$everything`` and the conditions of chains and ``_has``),
and one loaded or written resource is matched against the same clause through the search
index extraction and the reference matcher (``fhir.search.index``, ``fhir.search.clauses``),
which the contract tests hold to the SQL stores' answers.

Supported: every **token** search parameter of the type (``category``, ``code``, ``status``,
``_tag``, ``_security``...; SMART 2.0 leaves the required set open, US Core asks for
``category`` on Observation and Condition), and ``_id``, without modifiers or chains. A scope
with any other condition (a string, date or reference parameter, a modifier such as
``:in``, a chain, an unknown name or a malformed value) grants nothing on that type: refused,
never widened. Nor does any condition on AuditEvent, which the audit trail answers itself
(``security.audit_reads``) outside the queries the guard narrows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from medarchive.errors import FhirError
from medarchive.fhir.search.clauses import ClauseMatcher, Indexed
from medarchive.fhir.search.entries import IndexEntries
from medarchive.fhir.search.index import build_indexer
from medarchive.fhir.search.parse import RESULT_PARAMS, parse_clause
from medarchive.fhir.search.query import AllOf, AnyOf, Clause, OfType, Predicate, TokenValue
from medarchive.security.scopes import Scope

NOBODY = "!"  # never a valid id (R4 id: [A-Za-z0-9-.]{1,64})
NOTHING = Predicate("_id", "id", (TokenValue(None, NOBODY),))  # matches no resource
EVERY = Predicate("_id", "id", (TokenValue(None, NOBODY),), modifier="not")  # every resource
KINDS = frozenset({"token", "id"})
TRAIL = frozenset({"AuditEvent"})  # answered by the audit trail (audit_reads), not narrowed here
MAX_REMEMBERED = 4096  # clauses per (scopes, letter, type), rebuilt when full


def constrained(scopes: Iterable[Scope]) -> bool:
    """True when some scope carries a search condition."""
    return any(scope.query for scope in scopes)


@dataclass(frozen=True, slots=True)
class _Loaded:
    """One resource as the clause matcher sees it (``fhir.search.clauses.Indexed``)."""

    resource_type: str
    id: str
    micros: int
    entries: IndexEntries


class _Nothing:
    """An empty corpus: scope clauses never chain to other resources."""

    def current(self, resource_type: str | None) -> Iterable[Indexed]:
        return ()


class Granular:
    """The clauses of granular scopes over one spec (its search parameters and indexer)."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self._index = build_indexer(spec, full_text=False)  # token rows only are ever tested
        self._supported: dict[tuple[Scope, str], Clause | None] = {}
        self._clauses: dict[tuple[tuple[Scope, ...], str, str], Clause | None] = {}

    def condition(self, scope: Scope, resource_type: str) -> Clause | None:
        """The condition ``scope`` puts on resources of ``resource_type`` (its pairs ANDed);
        None when a pair is not supported there (the scope then grants nothing on it)."""
        key = (scope, resource_type)
        if key not in self._supported:
            if len(self._supported) >= MAX_REMEMBERED:
                self._supported.clear()
            self._supported[key] = self._parse(scope.query, resource_type)
        return self._supported[key]

    def _parse(self, pairs: Sequence[tuple[str, str]], resource_type: str) -> Clause | None:
        if resource_type in TRAIL:
            return None
        try:
            params = self.spec.search_params(resource_type)
        except KeyError:
            return None
        found: list[Clause] = []
        for name, value in pairs:
            param = params.get(name)
            if param is None or param.type != "token" or name in RESULT_PARAMS:
                return None
            try:
                clause = parse_clause(self.spec, resource_type, name, value)
            except FhirError:  # a malformed value
                return None
            if not (isinstance(clause, Predicate) and clause.kind in KINDS
                    and clause.modifier is None and clause.missing is None):
                return None
            found.append(clause)
        if not found:
            return None
        return found[0] if len(found) == 1 else AllOf(tuple(found))

    def supports(self, scope: Scope, resource_type: str | None) -> bool:
        """True when ``scope`` grants anything on ``resource_type``: it is plain, or its
        condition is supported there (None, all types at once: only plain scopes)."""
        if not scope.query:
            return True
        return resource_type is not None and self.condition(scope, resource_type) is not None

    def clause(self, scopes: tuple[Scope, ...], letter: str, resource_type: str
               ) -> Clause | None:
        """What ``scopes`` grant ``letter`` on among the resources of ``resource_type``: None
        for all of them (a plain scope grants it), else the union of the granular scopes'
        conditions (``NOTHING`` when no scope grants it)."""
        key = (scopes, letter, resource_type)
        if key in self._clauses:
            return self._clauses[key]
        granting = [s for s in scopes if s.allows(letter, resource_type)]
        found: Clause | None
        if any(not s.query for s in granting):
            found = None
        else:
            parts = tuple(dict.fromkeys(c for c in (self.condition(s, resource_type)
                                                    for s in granting) if c is not None))
            found = NOTHING if not parts else parts[0] if len(parts) == 1 else AnyOf(parts)
        if len(self._clauses) >= MAX_REMEMBERED:
            self._clauses.clear()
        self._clauses[key] = found
        return found

    def across(self, scopes: tuple[Scope, ...], letter: str, types: Sequence[str]
               ) -> Clause | None:
        """The grant over a query of several ``types`` (each one the actor may use; the query
        must be confined to them): None when no type is constrained; the shared condition
        when all are constrained alike; else one alternative per type, each decided with its
        type known (``OfType``; ``EVERY`` for a type a plain scope grants)."""
        clauses = {t: self.clause(scopes, letter, t) for t in types}
        if all(c is None for c in clauses.values()):
            return None
        distinct = set(clauses.values())
        if len(distinct) == 1:  # e.g. ``*.rs?_tag=...``: one condition, no per-type lookup
            return distinct.pop()
        return AnyOf(tuple(OfType(t, EVERY if c is None else c)
                           for t, c in sorted(clauses.items())))

    def matches(self, clause: Clause, resource: dict[str, Any]) -> bool:
        """True when ``resource`` satisfies ``clause`` (a condition ``clause`` built), by its
        extracted search index, as a search would find it."""
        loaded = _Loaded(str(resource["resourceType"]), str(resource.get("id") or ""), 0,
                         self._index(resource))
        return ClauseMatcher(_Nothing()).matches(loaded, clause)
