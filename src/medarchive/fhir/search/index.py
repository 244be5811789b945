"""Search-index extraction: the official R4 SearchParameter expressions run on every write.

For each resource type, every SearchParameter of the spec whose type we index is compiled once
(FHIRPath) and evaluated on the resource; each result is turned into the index rows of its kind
(R4 Search §3.1.1.5 "Search Parameter Types"): a CodeableConcept gives one token per coding, a
HumanName one string per name part, a Period one date range, and so on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

from medarchive.fhir.search.dates import MAX_MICROS, MIN_MICROS, date_range
from medarchive.fhir.search.entries import (
    DateEntry,
    IndexEntries,
    NumberEntry,
    QuantityEntry,
    ReferenceEntry,
    StringEntry,
    TokenEntry,
    UriEntry,
)
from medarchive.fhir.search.normalize import normalize_string

log = logging.getLogger(__name__)

INDEXED_TYPES = frozenset({"token", "string", "reference", "date", "number", "quantity", "uri"})
_NAME_PARTS = ("text", "family", "given", "prefix", "suffix")
_ADDRESS_PARTS = ("text", "line", "city", "district", "state", "postalCode", "country")


def _plain(value: Any) -> Any:
    """FHIRPath results as JSON-like Python values (the engine may wrap primitives)."""
    if isinstance(value, dict | str | bool | int | float | Decimal | list):
        return value
    for attribute in ("json", "to_json", "value"):
        found = getattr(value, attribute, None)
        if found is not None:
            return found() if callable(found) else found
    return str(value)


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        parts = _NAME_PARTS if ("family" in value or "given" in value) else _ADDRESS_PARTS
        for part in parts:
            found = value.get(part)
            if isinstance(found, str):
                yield found
            elif isinstance(found, list):
                yield from (item for item in found if isinstance(item, str))


def _tokens(value: Any) -> Iterable[tuple[str | None, str | None, str | None]]:
    if isinstance(value, bool):
        yield None, "true" if value else "false", None
    elif isinstance(value, str | int | Decimal | float):
        yield None, str(value), None
    elif isinstance(value, dict):
        if "coding" in value:  # CodeableConcept
            for coding in value["coding"]:
                if isinstance(coding, dict):
                    yield coding.get("system"), coding.get("code"), coding.get("display")
        elif "value" in value:  # Identifier, ContactPoint
            yield value.get("system"), str(value["value"]), None
        elif "code" in value or "system" in value:  # Coding
            yield value.get("system"), value.get("code"), value.get("display")


def _reference(value: Any) -> ReferenceEntry | None:
    text = value.get("reference") if isinstance(value, dict) else value
    if not isinstance(text, str) or text.startswith("#"):
        return None
    if "://" in text or text.startswith("urn:"):
        return ReferenceEntry("", None, None, text.split("|")[0])
    parts = text.split("/")
    if len(parts) >= 2 and parts[0][:1].isupper():
        if len(parts) >= 4 and parts[-2] == "_history":
            parts = parts[:-2]
        return ReferenceEntry("", parts[-2], parts[-1], None)
    return None


def _dates(value: Any) -> Iterable[tuple[int, int]]:
    if isinstance(value, str):
        try:
            yield date_range(value)
        except (ValueError, OverflowError):
            return
    elif isinstance(value, dict):
        if "start" in value or "end" in value:  # Period
            low = date_range(value["start"])[0] if isinstance(value.get("start"), str) \
                else MIN_MICROS
            high = date_range(value["end"])[1] if isinstance(value.get("end"), str) \
                else MAX_MICROS
            yield low, high
        elif "event" in value:  # Timing
            for event in value.get("event", ()):
                yield from _dates(event)


def number_range(text: str) -> tuple[float, float, float]:
    """A decimal and the interval its significant digits imply (R4 Search §3.1.1.5.9)."""
    number = Decimal(text)
    exponent = number.as_tuple().exponent
    half = Decimal(5).scaleb(int(exponent) - 1) if isinstance(exponent, int) else Decimal(0)
    return float(number), float(number - half), float(number + half)


def _number(value: Any) -> tuple[float, float, float] | None:
    if isinstance(value, bool):
        return None
    try:
        return number_range(str(value))
    except (InvalidOperation, ValueError):
        return None


class Indexer:
    """Callable that extracts IndexEntries for a resource; build one per process with the spec."""

    def __init__(self, spec: Any, compile_expression: Callable[[str], Any]) -> None:
        self._spec = spec
        self._compile = compile_expression
        self._plans: dict[str, list[tuple[str, str, Any]]] = {}

    def _plan(self, resource_type: str) -> list[tuple[str, str, Any]]:
        plan = self._plans.get(resource_type)
        if plan is None:
            plan = []
            for code, param in sorted(self._spec.search_params(resource_type).items()):
                if param.type in INDEXED_TYPES and param.expression and code not in (
                        "_id", "_lastUpdated"):
                    plan.append((code, param.type, self._compile(param.expression)))
            self._plans[resource_type] = plan
        return plan

    def __call__(self, resource: dict[str, Any]) -> IndexEntries:
        rows: dict[str, list[Any]] = {"tokens": [], "strings": [], "references": [],
                                      "dates": [], "numbers": [], "quantities": [], "uris": []}
        params: set[str] = set()
        for code, kind, expression in self._plan(resource["resourceType"]):
            try:
                found = [_plain(v) for v in expression.evaluate(resource)]
            except Exception:  # an engine gap must not block a valid write; make it visible
                log.warning("index %s.%s failed on %s/%s", resource["resourceType"], code,
                            resource["resourceType"], resource.get("id"), exc_info=True)
                continue
            if found and _extract(code, kind, found, rows):
                params.add(code)
        return IndexEntries(
            tokens=tuple(dict.fromkeys(rows["tokens"])),
            strings=tuple(dict.fromkeys(rows["strings"])),
            references=tuple(dict.fromkeys(rows["references"])),
            dates=tuple(dict.fromkeys(rows["dates"])),
            numbers=tuple(dict.fromkeys(rows["numbers"])),
            quantities=tuple(dict.fromkeys(rows["quantities"])),
            uris=tuple(dict.fromkeys(rows["uris"])),
            params=frozenset(params),
        )


def _extract(code: str, kind: str, values: list[Any], rows: dict[str, list[Any]]) -> bool:
    """Append the rows of one parameter's values; say whether any row was made."""
    sizes = {name: len(found) for name, found in rows.items()}
    for value in values:
        if kind == "token":
            rows["tokens"] += [TokenEntry(code, system, token, display)
                               for system, token, display in _tokens(value)
                               if token is not None or system is not None]
        elif kind == "string":
            rows["strings"] += [StringEntry(code, normalize_string(text), text)
                                for text in _strings(value)]
        elif kind == "reference":
            ref = _reference(value)
            if ref:
                rows["references"].append(ReferenceEntry(code, ref.target_type, ref.target_id,
                                                         ref.url))
        elif kind == "date":
            rows["dates"] += [DateEntry(code, low, high) for low, high in _dates(value)]
        elif kind == "number":
            parsed = _number(value)
            if parsed:
                rows["numbers"].append(NumberEntry(code, *parsed))
        elif kind == "quantity" and isinstance(value, dict) and "value" in value:
            parsed = _number(value["value"])
            if parsed:
                unit = value.get("code") or value.get("unit")
                rows["quantities"].append(QuantityEntry(code, value.get("system"), unit, *parsed))
        elif kind == "uri" and isinstance(value, str):
            rows["uris"].append(UriEntry(code, value))
    return any(len(found) != sizes[name] for name, found in rows.items())


def build_indexer(spec: Any) -> Indexer:
    """The indexer for the R4 spec, using MedArchive's FHIRPath engine."""
    from medarchive import fhirpath
    return Indexer(spec, fhirpath.compile)
