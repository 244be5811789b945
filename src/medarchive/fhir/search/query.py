"""The parsed form of a FHIR search, independent of any store.

``fhir.search.parse`` turns URL parameters into a ``SearchQuery``; each store turns a
``SearchQuery`` into its own query (SQL, or a plain matcher in memory). Predicates in a query are
ANDed; the values inside one predicate are ORed (R4 Search §3.1.1.5.4 "Composite search
parameters" and §3.1.1.5.5 "OR / AND").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TokenValue:
    """``[system]|[code]``: system None means any system, "" means no system."""

    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class StringValue:
    value: str  # normalised like StringEntry.value (exact for the :exact modifier)


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
    prefix: str
    low: float
    high: float
    system: str | None
    code: str | None


@dataclass(frozen=True, slots=True)
class UriValue:
    value: str


Value = TokenValue | StringValue | ReferenceValue | RangeValue | QuantityValue | UriValue

# kinds: the R4 SearchParamType of the parameter, plus "id" and "lastUpdated" which are
# answered from the resource table itself rather than from index rows.
KINDS = frozenset({"token", "string", "reference", "date", "number", "quantity", "uri", "id",
                   "lastUpdated"})


@dataclass(frozen=True, slots=True)
class Predicate:
    """One search parameter occurrence; its values are ORed."""

    param: str
    kind: str
    values: tuple[Value, ...]
    modifier: str | None = None  # e.g. "exact", "contains", "missing", "not"
    missing: bool | None = None  # for :missing=true|false


@dataclass(frozen=True, slots=True)
class SortKey:
    param: str  # "_id", "_lastUpdated" or a search parameter code
    kind: str
    descending: bool = False


@dataclass(frozen=True, slots=True)
class SearchQuery:
    resource_type: str | None  # None for a system-level search
    predicates: tuple[Predicate, ...] = ()
    sort: tuple[SortKey, ...] = ()
    count: int = 20
    offset: int = 0
