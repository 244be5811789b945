"""The search-index entries extracted from one resource version.

Each kind of SearchParameter (R4 §3.1.1.5 "search" / SearchParamType) becomes a row shape that
both stores keep: the SQL store in one table per kind, the memory store in lists. Dates and
instants are kept as ranges of microseconds since the Unix epoch (UTC), so a partial date such as
``2024-03`` matches everything inside that month, as the spec requires.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class TokenEntry:
    param: str
    system: str | None
    code: str | None
    display: str | None = None


@dataclass(frozen=True, slots=True)
class StringEntry:
    param: str
    value: str  # normalised: case-folded, accents removed, whitespace collapsed
    exact: str  # as written


@dataclass(frozen=True, slots=True)
class ReferenceEntry:
    param: str
    target_type: str | None  # None for absolute URLs outside this server
    target_id: str | None
    url: str | None = None  # canonical or absolute reference, when not Type/id


@dataclass(frozen=True, slots=True)
class DateEntry:
    param: str
    low: int  # inclusive, microseconds since epoch
    high: int  # inclusive


@dataclass(frozen=True, slots=True)
class NumberEntry:
    param: str
    value: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class QuantityEntry:
    param: str
    system: str | None
    code: str | None
    value: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class UriEntry:
    param: str
    value: str


@dataclass(frozen=True, slots=True)
class IndexEntries:
    """All index rows of one resource version, grouped by kind."""

    tokens: tuple[TokenEntry, ...] = ()
    strings: tuple[StringEntry, ...] = ()
    references: tuple[ReferenceEntry, ...] = ()
    dates: tuple[DateEntry, ...] = ()
    numbers: tuple[NumberEntry, ...] = ()
    quantities: tuple[QuantityEntry, ...] = ()
    uris: tuple[UriEntry, ...] = ()
    params: frozenset[str] = field(default_factory=frozenset)  # every param with a value
