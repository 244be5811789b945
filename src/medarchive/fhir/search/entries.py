"""The search-index entries extracted from one resource version.

Each kind of SearchParameter (R4 §3.1.1.5 "search" / SearchParamType) becomes a row shape that
both stores keep: the SQL store in one table per kind, the memory store in lists. Dates and
instants are kept as ranges of microseconds since the Unix epoch (UTC), so a partial date such as
``2024-03`` matches everything inside that month, as the spec requires.

Modifier-specific rows live beside the plain ones under derived parameter names, so they share
the tables and their indexes: ``<param>:text`` string rows hold a token's CodeableConcept.text
and Coding.display texts (``:text``), ``<param>:identifier`` token rows a reference's
``Reference.identifier`` (``:identifier``), ``<param>:of-type`` token rows an identifier as
system = type system, code = identifier value, display = type code (``:of-type``), and
``_text``/``_content`` string rows the words of the narrative and of the resource's
human-readable text.
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
    """``code`` is Quantity.code (or the unit when there is no code); when the unit is UCUM and
    converts, ``canonical_*`` hold the value range in UCUM base units and that unit's name."""

    param: str
    system: str | None
    code: str | None
    value: float
    low: float
    high: float
    unit: str | None = None
    canonical_code: str | None = None
    canonical_low: float | None = None
    canonical_high: float | None = None


@dataclass(frozen=True, slots=True)
class UriEntry:
    param: str
    value: str


@dataclass(frozen=True, slots=True)
class CompositeEntry:
    """One combination of a composite parameter's components taken from the same element.

    Component ``n`` fills slot ``n`` by its kind: token (system, code), reference (type, id),
    string (code = normalised text), uri (code), date/number (low, high), quantity (system,
    code, low, high). A quantity combination is stored twice when its unit converts: once as
    written (``canonical`` false) and once in UCUM base units (``canonical`` true).
    """

    param: str
    system1: str | None = None
    code1: str | None = None
    low1: float | None = None
    high1: float | None = None
    system2: str | None = None
    code2: str | None = None
    low2: float | None = None
    high2: float | None = None
    system3: str | None = None
    code3: str | None = None
    low3: float | None = None
    high3: float | None = None
    canonical: bool = False


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
    composites: tuple[CompositeEntry, ...] = ()
