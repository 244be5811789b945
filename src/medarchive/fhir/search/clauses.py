"""The reference semantics of whole clauses: chains, reverse chains, compartments, disjunctions.

``fhir.search.match`` decides one predicate on one resource's index. Chains (R4 Search
§3.1.1.5.11), ``_has`` (§3.1.1.5.12) and compartments (§3.1.0.7) need other resources too, so
the matcher here works over a ``Corpus`` (the memory store's current resources). It answers a
chain by first finding the set of targets that satisfy the chained clause, then checking
references against that set, and caches the set for the rest of the search, so a search costs
one pass per nested clause, never one pass per candidate.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from medarchive.fhir.search.entries import IndexEntries
from medarchive.fhir.search.match import predicate_matches
from medarchive.fhir.search.query import (
    AllOf,
    AnyOf,
    Chain,
    Clause,
    Compartment,
    Has,
    OfType,
    Predicate,
)


class Indexed(Protocol):
    """One current, not deleted resource and its index."""

    @property
    def resource_type(self) -> str: ...
    @property
    def id(self) -> str: ...
    @property
    def micros(self) -> int: ...  # meta.lastUpdated as epoch microseconds
    @property
    def entries(self) -> IndexEntries: ...


class Corpus(Protocol):
    def current(self, resource_type: str | None) -> Iterable[Indexed]:
        """Every current, not deleted resource of a type (None: of every type)."""
        ...


class ClauseMatcher:
    """Decides clauses over one corpus; make one per search (it caches nested results)."""

    def __init__(self, corpus: Corpus) -> None:
        self._corpus = corpus
        self._targets: dict[Chain, frozenset[str]] = {}
        self._referenced: dict[Has, frozenset[tuple[str, str]]] = {}

    def matches(self, item: Indexed, clause: Clause) -> bool:
        """Whether ``item`` satisfies ``clause`` (R4 §3.1.1.5.11-12 for chains and _has)."""
        if isinstance(clause, Predicate):
            return predicate_matches(item.entries, item.id, item.micros, clause)
        if isinstance(clause, Chain):
            targets = self._chain_targets(clause)
            return any(e.param == clause.param and e.target_type == clause.target_type
                       and e.target_id in targets for e in item.entries.references)
        if isinstance(clause, Has):
            return (item.resource_type, item.id) in self._has_referenced(clause)
        if isinstance(clause, Compartment):
            return in_compartment(item, clause)
        if isinstance(clause, AnyOf):
            return any(self.matches(item, part) for part in clause.clauses)
        if isinstance(clause, AllOf):
            return all(self.matches(item, part) for part in clause.clauses)
        if isinstance(clause, OfType):
            return item.resource_type == clause.resource_type and \
                self.matches(item, clause.clause)
        raise TypeError(f"not a search clause: {clause!r}")

    def select(self, resource_type: str | None, clause: Clause | None) -> list[Indexed]:
        """The current resources of ``resource_type`` (None: any) that satisfy ``clause``."""
        return [item for item in self._corpus.current(resource_type)
                if clause is None or self.matches(item, clause)]

    def _chain_targets(self, chain: Chain) -> frozenset[str]:
        found = self._targets.get(chain)
        if found is None:
            found = frozenset(item.id for item in self.select(chain.target_type, chain.clause))
            self._targets[chain] = found
        return found

    def _has_referenced(self, has: Has) -> frozenset[tuple[str, str]]:
        found = self._referenced.get(has)
        if found is None:
            found = frozenset(
                (e.target_type, e.target_id)
                for item in self.select(has.source_type, has.clause)
                for e in item.entries.references
                if (has.param is None or e.param == has.param) and e.target_type is not None
                and e.target_id is not None)
            self._referenced[has] = found
        return found


def in_compartment(item: Indexed, compartment: Compartment) -> bool:
    """Whether ``item`` is in the compartment (R4 §3.1.0.7, CompartmentDefinition)."""
    anyone = compartment.id is None  # the compartment of every resource of its type
    if compartment.owner and item.resource_type == compartment.compartment and (
            anyone or item.id == compartment.id):
        return True
    links = {param for rtype, param in compartment.links if rtype == item.resource_type}
    return bool(links) and any(
        e.param in links and e.target_type == compartment.compartment
        and e.target_id is not None and (anyone or e.target_id == compartment.id)
        for e in item.entries.references)
