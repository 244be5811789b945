"""The parsed form of a FHIR search, independent of any store.

``fhir.search.parse`` turns URL parameters into a ``SearchQuery``; each store turns a
``SearchQuery`` into its own query (SQL, or a plain matcher in memory). The clauses of a query are
ANDed; the values inside one predicate are ORed (R4 Search §3.1.1.5.5 "OR / AND").

Besides plain predicates a clause can be a chain (``subject:Patient.name=x``, §3.1.1.5.11
"Chained parameters"), a reverse chain (``_has:Observation:patient:code=x``, §3.1.1.5.12), a
compartment (§3.1.0.7 "compartment search" and ``$everything``) or a disjunction of clauses.
Clauses nest: a chain's condition on its target is itself a clause.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TokenValue:
    """``[system]|[code]``: system None means any system, "" means no system."""

    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class CodeSetValue:
    """A token ``:in``/``:not-in`` value set, expanded to its (system, code) pairs."""

    url: str
    codes: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class OfTypeValue:
    """``identifier:of-type=[type system]|[type code]|[value]`` (R4 §3.1.1.5.10)."""

    system: str
    code: str
    value: str


@dataclass(frozen=True, slots=True)
class StringValue:
    value: str  # normalised like StringEntry.value (exact for the :exact modifier)


@dataclass(frozen=True, slots=True)
class TextValue:
    """A ``_text``/``_content`` search: every word must be the start of a word of the indexed
    text (words normalised like strings)."""

    words: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ReferenceValue:
    target_type: str | None
    target_id: str | None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class RangeValue:
    """A prefixed date or number; ``prefix`` is eq ne gt lt ge le sa eb or ap, bounds inclusive."""

    prefix: str
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class QuantityValue:
    """A prefixed quantity. With ``canonical`` set the search compares UCUM base units:
    ``code`` is then the canonical unit and ``low``/``high`` are in base units."""

    prefix: str
    low: float
    high: float
    system: str | None
    code: str | None
    canonical: bool = False


@dataclass(frozen=True, slots=True)
class UriValue:
    value: str


@dataclass(frozen=True, slots=True)
class CompositeValue:
    """One ``a$b[$c]`` alternative of a composite parameter: each part is matched by the
    component of the same position (R4 §3.1.1.5.4 "composite")."""

    parts: tuple[Value, ...]


Value = (TokenValue | CodeSetValue | OfTypeValue | StringValue | TextValue | ReferenceValue
         | RangeValue | QuantityValue | UriValue | CompositeValue)

# kinds: the R4 SearchParamType of the parameter, plus "id" and "lastUpdated" which are
# answered from the resource table itself rather than from index rows.
KINDS = frozenset({"token", "string", "reference", "date", "number", "quantity", "uri",
                   "composite", "id", "lastUpdated"})


@dataclass(frozen=True, slots=True)
class Predicate:
    """One search parameter occurrence; its values are ORed.

    ``modifier`` is one of exact contains text not above below in not-in of-type identifier
    (None for a plain search); ``missing`` is set for ``:missing=true|false``.
    ``components`` names the component kinds of a composite parameter, in order.
    ``sources`` names the parameters whose index rows are read instead of the parameter's own
    when it is the union of others (``fhir.search.unions``); empty for the others.
    """

    param: str
    kind: str
    values: tuple[Value, ...]
    modifier: str | None = None
    missing: bool | None = None
    components: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()

    @property
    def stored(self) -> tuple[str, ...]:
        """The parameters whose index rows answer this predicate."""
        return self.sources or (self.param,)


@dataclass(frozen=True, slots=True)
class Chain:
    """``param.chained=...``: some reference of ``param`` points at a current resource of
    ``target_type`` that satisfies ``clause`` (R4 §3.1.1.5.11)."""

    param: str
    target_type: str
    clause: Clause


@dataclass(frozen=True, slots=True)
class Has:
    """``_has:Type:param:...``: some current resource of ``source_type`` whose ``param`` refers to
    this resource satisfies ``clause`` (R4 §3.1.1.5.12). None in ``source_type`` or ``param``
    means any; a None ``clause`` means no further condition."""

    source_type: str | None
    param: str | None
    clause: Clause | None


@dataclass(frozen=True, slots=True)
class Compartment:
    """Membership of a compartment (R4 §3.1.0.7, CompartmentDefinition): a resource is in
    ``compartment``/``id`` when one of its ``links`` (resource type, parameter) refers to it;
    with ``owner`` the compartment's own resource is a member too. ``id`` None means the
    compartment of any resource of that type (type-level ``Patient/$everything``)."""

    compartment: str
    id: str | None
    links: tuple[tuple[str, str], ...]
    owner: bool = False


@dataclass(frozen=True, slots=True)
class AnyOf:
    """A disjunction of clauses (used for chains over several target types, and compartments)."""

    clauses: tuple[Clause, ...]


@dataclass(frozen=True, slots=True)
class AllOf:
    """A conjunction of clauses, for nesting: the condition of a chain or ``_has`` narrowed
    by the security layer (labels the actor may not see)."""

    clauses: tuple[Clause, ...]


@dataclass(frozen=True, slots=True)
class OfType:
    """Resources of ``resource_type`` satisfying ``clause`` (decided as a search of that type):
    confines one part of a query over several types to one type (``$everything`` ``start``/
    ``end``, where each type has its own care-date parameters)."""

    resource_type: str
    clause: Clause


Clause = Predicate | Chain | Has | Compartment | AnyOf | AllOf | OfType


@dataclass(frozen=True, slots=True)
class SortKey:
    param: str  # "_id", "_lastUpdated" or a search parameter code
    kind: str
    descending: bool = False
    sources: tuple[str, ...] = ()  # as ``Predicate.sources``

    @property
    def stored(self) -> tuple[str, ...]:
        """The parameters whose index rows give the sort values."""
        return self.sources or (self.param,)


@dataclass(frozen=True, slots=True)
class SearchQuery:
    """What to find. ``resource_type`` None is a system-level search, over ``types`` when that
    is not empty. ``predicates`` holds the ANDed clauses (named for its first use)."""

    resource_type: str | None
    predicates: tuple[Clause, ...] = ()
    sort: tuple[SortKey, ...] = ()
    count: int = 20
    offset: int = 0
    types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Include:
    """One ``_include``/``_revinclude`` (R4 §3.1.1.5.14): from resources of ``source_type``
    follow reference parameter ``param`` (None for ``*``: every reference parameter) to targets
    of ``target_type`` (None: any). ``reverse`` is ``_revinclude``; ``iterate`` repeats it on
    included resources too."""

    source_type: str
    param: str | None
    target_type: str | None = None
    reverse: bool = False
    iterate: bool = False
