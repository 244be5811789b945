"""The reference semantics of search: does one resource's index satisfy a predicate?

The memory store answers searches with these functions; the SQL stores compile the same rules to
SQL, and the contract tests hold them to identical results. Prefix rules follow R4 Search
§3.1.1.5.6 "Prefixes" over ranges: a stored value is the range [low, high] it denotes (a date
of day precision covers the whole day), and so is the searched value.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from medarchive.fhir.search.entries import IndexEntries
from medarchive.fhir.search.query import (
    Predicate,
    QuantityValue,
    RangeValue,
    ReferenceValue,
    StringValue,
    TokenValue,
    UriValue,
    Value,
)


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


def _token(entries: IndexEntries, param: str, value: TokenValue) -> bool:
    for entry in entries.tokens:
        if entry.param != param:
            continue
        if value.code is not None and entry.code != value.code:
            continue
        if value.system is None:
            return True
        if value.system == "" and entry.system is None:
            return True
        if value.system and entry.system == value.system:
            return True
    return False


def _string(entries: IndexEntries, param: str, value: StringValue, modifier: str | None) -> bool:
    for entry in entries.strings:
        if entry.param != param:
            continue
        if modifier == "exact":
            if entry.exact == value.value:
                return True
        elif modifier == "contains":
            if value.value in entry.value:
                return True
        elif entry.value.startswith(value.value):
            return True
    return False


def _reference(entries: IndexEntries, param: str, value: ReferenceValue) -> bool:
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


def _ranges(rows: Iterable[tuple[float, float]], value: RangeValue) -> bool:
    return any(range_matches(value.prefix, low, high, value.low, value.high) for low, high in rows)


def _quantity(entries: IndexEntries, param: str, value: QuantityValue) -> bool:
    for entry in entries.quantities:
        if entry.param != param:
            continue
        if value.code is not None and entry.code != value.code:
            continue
        if value.system is not None and entry.system != value.system:
            continue
        if range_matches(value.prefix, entry.low, entry.high, value.low, value.high):
            return True
    return False


def value_matches(entries: IndexEntries, resource_id: str, last_updated: int,
                  predicate: Predicate, value: Value) -> bool:
    """Whether one OR-alternative of a predicate matches."""
    kind, param = predicate.kind, predicate.param
    if kind == "id":
        assert isinstance(value, TokenValue)
        return resource_id == value.code
    if kind == "lastUpdated":
        assert isinstance(value, RangeValue)
        return range_matches(value.prefix, last_updated, last_updated, value.low, value.high)
    if kind == "token":
        assert isinstance(value, TokenValue)
        return _token(entries, param, value)
    if kind == "string":
        assert isinstance(value, StringValue)
        return _string(entries, param, value, predicate.modifier)
    if kind == "reference":
        assert isinstance(value, ReferenceValue)
        return _reference(entries, param, value)
    if kind == "date":
        assert isinstance(value, RangeValue)
        return _ranges(((e.low, e.high) for e in entries.dates if e.param == param), value)
    if kind == "number":
        assert isinstance(value, RangeValue)
        return _ranges(((e.low, e.high) for e in entries.numbers if e.param == param), value)
    if kind == "quantity":
        assert isinstance(value, QuantityValue)
        return _quantity(entries, param, value)
    if kind == "uri":
        assert isinstance(value, UriValue)
        return any(e.param == param and e.value == value.value for e in entries.uris)
    raise ValueError(f"unknown search kind {kind}")


def predicate_matches(entries: IndexEntries, resource_id: str, last_updated: int,
                      predicate: Predicate) -> bool:
    """R4 Search: OR across a predicate's values; ``:missing`` and ``:not`` as §3.1.1.5.5 says."""
    if predicate.missing is not None:
        return (predicate.param not in entries.params) == predicate.missing
    hit = any(value_matches(entries, resource_id, last_updated, predicate, value)
              for value in predicate.values)
    return not hit if predicate.modifier == "not" else hit


def sort_value(entries: IndexEntries, kind: str, param: str,
               descending: bool) -> float | str | None:
    """The value a resource sorts by for one search parameter (R4 Search §3.1.1.4.3 "_sort")."""
    pick: Callable[..., float | str] = max if descending else min
    values: list[float | str]
    if kind == "string":
        values = [e.value for e in entries.strings if e.param == param]
    elif kind == "token":
        values = [e.code for e in entries.tokens if e.param == param and e.code is not None]
    elif kind == "date":
        values = [(e.high if descending else e.low) for e in entries.dates if e.param == param]
    elif kind == "number":
        values = [e.value for e in entries.numbers if e.param == param]
    elif kind == "quantity":
        values = [e.value for e in entries.quantities if e.param == param]
    elif kind == "uri":
        values = [e.value for e in entries.uris if e.param == param]
    elif kind == "reference":
        values = [f"{e.target_type}/{e.target_id}" for e in entries.references
                  if e.param == param and e.target_id]
    else:
        raise ValueError(f"cannot sort by {kind} parameter {param}")
    return pick(values) if values else None
