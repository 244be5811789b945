"""The reference semantics of search: does one resource's index satisfy a predicate?

The memory store answers searches with these functions; the SQL stores compile the same rules to
SQL (``store.sql.predicates``), and the contract and property tests hold them to identical
results. Prefix rules follow R4 Search §3.1.1.5.6 "Prefixes" over ranges: a stored value is the
range [low, high] it denotes (a date of day precision covers the whole day), and so is the
searched value.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from dataclasses import replace
from typing import Any

from medarchive.fhir.search.entries import CompositeEntry, IndexEntries
from medarchive.fhir.search.query import (
    CodeSetValue,
    CompositeValue,
    OfTypeValue,
    Predicate,
    QuantityValue,
    RangeValue,
    ReferenceValue,
    StringValue,
    TextValue,
    TokenValue,
    UriValue,
    Value,
)

NEGATING = frozenset({"not", "not-in"})


def range_matches(prefix: str, low: float, high: float, vlow: float, vhigh: float) -> bool:
    """Compare a stored range [low, high] with a searched range [vlow, vhigh] under ``prefix``."""
    if prefix == "eq":
        return low >= vlow and high <= vhigh
    if prefix == "ne":
        return not (low >= vlow and high <= vhigh)
    if prefix == "gt":
        return high > vhigh
    if prefix == "lt":
        return low < vlow
    if prefix == "ge":
        return high >= vlow
    if prefix == "le":
        return low <= vhigh
    if prefix == "sa":
        return low > vhigh
    if prefix == "eb":
        return high < vlow
    if prefix == "ap":
        return high >= vlow and low <= vhigh
    raise ValueError(f"unknown prefix {prefix}")


def token_matches(system: str | None, code: str | None, value: TokenValue) -> bool:
    """``[system]|[code]`` against one stored token (R4 §3.1.1.5.10)."""
    if value.code is not None and code != value.code:
        return False
    if value.system is None:
        return True
    if value.system == "":
        return system is None
    return system == value.system


def uri_matches(stored: str, value: str, modifier: str | None) -> bool:
    """Equality, or ``:below`` (stored is value or under it) / ``:above`` (value is stored or
    under it), path segments counted at ``/`` (R4 §3.1.1.5.13)."""
    if modifier == "below":
        return stored == value or stored.startswith(value.rstrip("/") + "/")
    if modifier == "above":
        return value == stored or value.startswith(stored.rstrip("/") + "/")
    return stored == value


def string_matches(stored: str, exact: str, value: str, modifier: str | None) -> bool:
    if modifier == "exact":
        return exact == value
    if modifier == "contains":
        return value in stored
    return stored.startswith(value)


def _quantity(entries: IndexEntries, param: str, value: QuantityValue) -> bool:
    for entry in entries.quantities:
        if entry.param != param:
            continue
        if value.canonical:
            if entry.canonical_code == value.code and entry.canonical_low is not None and \
                    entry.canonical_high is not None and range_matches(
                        value.prefix, entry.canonical_low, entry.canonical_high, value.low,
                        value.high):
                return True
            continue
        if value.system is not None and entry.system != value.system:
            continue
        if value.code is not None and entry.code != value.code and (
                value.system is not None or entry.unit != value.code):
            continue
        if range_matches(value.prefix, entry.low, entry.high, value.low, value.high):
            return True
    return False


def _slot_matches(kind: str, system: str | None, code: str | None, low: float | None,
                  high: float | None, part: Value) -> bool:
    if kind in ("token", "reference"):
        if isinstance(part, ReferenceValue):
            if part.url is not None:
                return code == part.url
            return code == part.target_id and (part.target_type is None or
                                               system == part.target_type)
        assert isinstance(part, TokenValue)
        return token_matches(system, code, part)
    if kind == "string":
        assert isinstance(part, StringValue)
        return code is not None and code.startswith(part.value)
    if kind == "uri":
        assert isinstance(part, UriValue)
        return code == part.value
    if low is None or high is None:
        return False
    if kind == "quantity":
        assert isinstance(part, QuantityValue)
        if part.system is not None and system != part.system:
            return False
        if part.code is not None and code != part.code:
            return False
    assert isinstance(part, RangeValue | QuantityValue)
    return range_matches(part.prefix, low, high, part.low, part.high)


def composite_matches(entry: CompositeEntry, kinds: tuple[str, ...],
                      value: CompositeValue) -> bool:
    """All parts of ``value`` match the components of one stored combination (§3.1.1.5.4)."""
    canonical = any(isinstance(p, QuantityValue) and p.canonical for p in value.parts)
    if entry.canonical != canonical:
        return False
    slots = ((entry.system1, entry.code1, entry.low1, entry.high1),
             (entry.system2, entry.code2, entry.low2, entry.high2),
             (entry.system3, entry.code3, entry.low3, entry.high3))
    return all(_slot_matches(kind, *slot, part)
               for kind, slot, part in zip(kinds, slots, value.parts, strict=False))


def _token(entries: IndexEntries, predicate: Predicate, value: Value) -> bool:
    param, modifier = predicate.param, predicate.modifier
    if modifier == "text":
        assert isinstance(value, StringValue)
        name = f"{param}:text"
        return any(e.param == name and e.value.startswith(value.value) for e in entries.strings)
    if isinstance(value, CodeSetValue):
        codes = set(value.codes)
        return any(e.param == param and (e.system, e.code) in codes for e in entries.tokens)
    if isinstance(value, OfTypeValue):
        name = f"{param}:of-type"
        return any(e.param == name and e.system == value.system and e.display == value.code
                   and e.code == value.value for e in entries.tokens)
    assert isinstance(value, TokenValue)
    return any(e.param == param and token_matches(e.system, e.code, value)
               for e in entries.tokens)


def _reference(entries: IndexEntries, predicate: Predicate, value: Value) -> bool:
    param = predicate.param
    if predicate.modifier == "identifier":
        assert isinstance(value, TokenValue)
        name = f"{param}:identifier"
        return any(e.param == name and token_matches(e.system, e.code, value)
                   for e in entries.tokens)
    assert isinstance(value, ReferenceValue)
    for entry in entries.references:
        if entry.param != param:
            continue
        if value.url is not None:
            if entry.url == value.url:
                return True
            continue
        if entry.target_id == value.target_id and (
                value.target_type is None or entry.target_type == value.target_type):
            return True
    return False


def _ranges(rows: Iterable[tuple[float, float]], value: Value) -> bool:
    assert isinstance(value, RangeValue)
    return any(range_matches(value.prefix, low, high, value.low, value.high) for low, high in rows)


def _text(entries: IndexEntries, param: str, value: Value) -> bool:
    assert isinstance(value, TextValue)
    found = [e.value for e in entries.strings if e.param == param]
    return all(any(word.startswith(w) for word in found) for w in value.words)


def value_matches(entries: IndexEntries, resource_id: str, last_updated: int,
                  predicate: Predicate, value: Value) -> bool:
    """Whether one OR-alternative of a predicate matches (before ``:not`` is applied)."""
    kind, param = predicate.kind, predicate.param
    if kind == "id":
        assert isinstance(value, TokenValue)
        return resource_id == value.code
    if kind == "lastUpdated":
        assert isinstance(value, RangeValue)
        return range_matches(value.prefix, last_updated, last_updated, value.low, value.high)
    if kind == "token":
        return _token(entries, predicate, value)
    if kind == "string":
        assert isinstance(value, StringValue)
        return any(e.param == param and string_matches(e.value, e.exact, value.value,
                                                       predicate.modifier)
                   for e in entries.strings)
    if kind == "text":
        return _text(entries, param, value)
    if kind == "reference":
        return _reference(entries, predicate, value)
    if kind == "date":
        return _ranges(((e.low, e.high) for e in entries.dates if e.param == param), value)
    if kind == "number":
        return _ranges(((e.low, e.high) for e in entries.numbers if e.param == param), value)
    if kind == "quantity":
        assert isinstance(value, QuantityValue)
        return _quantity(entries, param, value)
    if kind == "uri":
        assert isinstance(value, UriValue)
        return any(e.param == param and uri_matches(e.value, value.value, predicate.modifier)
                   for e in entries.uris)
    if kind == "composite":
        assert isinstance(value, CompositeValue)
        return any(e.param == param and composite_matches(e, predicate.components, value)
                   for e in entries.composites)
    raise ValueError(f"unknown search kind {kind}")


def predicate_matches(entries: IndexEntries, resource_id: str, last_updated: int,
                      predicate: Predicate) -> bool:
    """R4 Search: OR across a predicate's values; ``:missing``, ``:not`` and ``:not-in`` as
    §3.1.1.5.5 says (a resource without the element matches ``:not``)."""
    if predicate.missing is not None:
        present = any(param in entries.params for param in predicate.stored)
        return (not present) == predicate.missing
    singles = [replace(predicate, param=param, sources=()) for param in predicate.sources] \
        if predicate.sources else [predicate]
    hit = any(value_matches(entries, resource_id, last_updated, single, value)
              for single in singles for value in predicate.values)
    return not hit if predicate.modifier in NEGATING else hit


def sort_value(entries: IndexEntries, kind: str, params: Collection[str],
               descending: bool) -> float | str | None:
    """The value a resource sorts by for one search parameter, read from the rows of
    ``params`` (``SortKey.stored``) (R4 Search §3.1.1.4.3 "_sort"): its smallest value
    ascending, its largest descending (a date's low or high bound)."""
    pick: Callable[..., Any] = max if descending else min
    values: list[Any]
    if kind == "string":
        values = [e.value for e in entries.strings if e.param in params]
    elif kind == "token":
        values = [e.code for e in entries.tokens if e.param in params and e.code is not None]
    elif kind == "date":
        values = [(e.high if descending else e.low) for e in entries.dates if e.param in params]
    elif kind == "number":
        values = [e.value for e in entries.numbers if e.param in params]
    elif kind == "quantity":
        values = [e.value for e in entries.quantities if e.param in params]
    elif kind == "uri":
        values = [e.value for e in entries.uris if e.param in params]
    elif kind == "reference":
        values = [f"{e.target_type}/{e.target_id}" for e in entries.references
                  if e.param in params and e.target_id]
    else:
        raise ValueError(f"cannot sort by {kind} parameters {params}")
    return pick(values) if values else None
