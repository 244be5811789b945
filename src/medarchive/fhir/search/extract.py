"""Turn the values a SearchParameter expression returns into index rows of its kind.

R4 Search §3.1.1.5 maps each datatype to what a parameter type matches: a CodeableConcept gives
one token per coding (its text and displays feed ``:text``), an Identifier a token (its type
feeds ``:of-type``), a HumanName or Address one string per part, a Period one date range, a
Range one quantity interval, a Reference a target (its identifier feeds ``:identifier``).
Everything here is a pure function of the values; ``fhir.search.index`` decides which
expression's values go where. The ``*_parts`` functions give a value's rows without their
parameter name, so the indexer converts a value once for all the parameters that select it; the
conversions of texts that recur across resources (references, numbers, quantities) are cached.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from medarchive.fhir.search.dates import MAX_MICROS, MIN_MICROS, date_range
from medarchive.fhir.search.entries import (
    NumberEntry,
    QuantityEntry,
    ReferenceEntry,
    StringEntry,
    TokenEntry,
    UriEntry,
)
from medarchive.fhir.search.normalize import normalize_string
from medarchive.fhir.search.units import UCUM, canonical_range, decimal_range

NAME_PARTS = ("text", "family", "given", "prefix", "suffix")
ADDRESS_PARTS = ("text", "line", "city", "district", "state", "postalCode", "country")
CURRENCY = "urn:iso:std:iso:4217"
_NO_LOW, _NO_HIGH = -1e308, 1e308
_CACHED = 16384  # distinct texts remembered by the per-process caches below

# What one value gives, before it is bound to a parameter; rows are (param, *tail).
Tail = tuple[Any, ...]
TokenParts = tuple[tuple[Tail, ...], tuple[Tail, ...], tuple[Tail, ...]]
ReferenceParts = tuple[Tail | None, Tail | None]


def strings(value: Any) -> Iterator[str]:
    """The texts a string parameter matches in one value (R4 §3.1.1.5.8)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        parts = NAME_PARTS if ("family" in value or "given" in value) else ADDRESS_PARTS
        for part in parts:
            found = value.get(part)
            if isinstance(found, str):
                yield found
            elif isinstance(found, list):
                yield from (item for item in found if isinstance(item, str))


def string_parts(value: Any) -> tuple[Tail, ...]:
    """(normalised, as written) of each text of one value."""
    return tuple((normalize_string(text), text) for text in strings(value))


def string_rows(param: str, value: Any) -> list[StringEntry]:
    """String rows: normalised for matching, as written for ``:exact`` (§3.1.1.5.8)."""
    return [StringEntry(param, *part) for part in string_parts(value)]


def _text_parts(texts: list[Any]) -> tuple[Tail, ...]:
    """``:text`` parts: each text is searched like a string (R4 §3.1.1.5.10 ":text")."""
    found = [text for text in texts if isinstance(text, str) and text]
    if len(found) > 1:
        found = list(dict.fromkeys(found))
    return tuple((normalize_string(text), text) for text in found)


def primitive_token(value: Any, implied: Mapping[str, str] | None = None
                    ) -> tuple[str | None, str] | None:
    """(system, code) of a boolean, code, string or number value; None for anything else.

    ``implied`` maps a bare ``code`` value to the system its required binding implies.
    """
    if isinstance(value, bool):
        return None, "true" if value else "false"
    if isinstance(value, str | int | Decimal | float):
        code = str(value)
        return implied.get(code) if implied else None, code
    return None


def token_parts(value: dict[str, Any]) -> TokenParts:
    """What a CodeableConcept, Coding, Identifier or ContactPoint gives a token parameter:
    (system, code, display) per code, (type system, value, type code) per ``:of-type`` row and
    (normalised, as written) per ``:text`` text (R4 §3.1.1.5.10 "token")."""
    if "coding" in value or ("text" in value and "value" not in value):  # CodeableConcept
        found: list[Tail] = []
        texts = [value.get("text")]
        codings = value.get("coding")
        for coding in codings if isinstance(codings, list) else ():
            if isinstance(coding, dict):
                code = _coding(coding)
                if code[0] is not None or code[1] is not None:
                    found.append(code)
                texts.append(coding.get("display"))
        return tuple(found), (), _text_parts(texts)
    if "value" in value and value["value"] is not None:  # Identifier, ContactPoint
        text = str(value["value"])
        codes = ((_text(value.get("system")), text, None),)
        kind = value.get("type")
        if isinstance(kind, dict):
            types = tuple((_text(c.get("system")), text, _text(c.get("code")))
                          for c in _dicts(kind.get("coding")) if _text(c.get("code")))
            return codes, types, _text_parts([kind.get("text")])
        return codes, (), ()
    if _text(value.get("code")) is not None or _text(value.get("system")) is not None:
        return (_coding(value),), (), _text_parts([value.get("display")])  # Coding
    return (), (), ()


def token_rows(param: str, value: Any, implied: Mapping[str, str] | None = None
               ) -> tuple[list[TokenEntry], list[StringEntry]]:
    """Token rows and ``:text`` word rows of one value (R4 §3.1.1.5.10 "token").

    ``implied`` maps a bare ``code`` value to the system its required binding implies.
    """
    if not isinstance(value, dict):
        found = primitive_token(value, implied)
        return ([TokenEntry(param, *found)] if found else []), []
    codes, types, texts = token_parts(value)
    return ([TokenEntry(param, *code) for code in codes]
            + [TokenEntry(f"{param}:of-type", *kind) for kind in types],
            [StringEntry(f"{param}:text", *text) for text in texts])


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _coding(coding: dict[str, Any]) -> Tail:
    system, code, display = coding.get("system"), coding.get("code"), coding.get("display")
    return (system if isinstance(system, str) else None, code if isinstance(code, str) else None,
            display if isinstance(display, str) else None)


def reference_parts(value: Any) -> ReferenceParts:
    """(type, id, url) of the target and (system, value) of ``Reference.identifier`` of one
    value, each None when absent (R4 §3.1.1.5.11)."""
    target = identifier = None
    text = value.get("reference") if isinstance(value, dict) else value
    if isinstance(value, dict) and isinstance(value.get("identifier"), dict):
        ident = value["identifier"]
        if ident.get("value") is not None:
            identifier = ident.get("system"), str(ident["value"])
    if isinstance(text, str) and text and not text.startswith("#"):
        target = parse_reference(text)
    return target, identifier


def reference_rows(param: str, value: Any) -> tuple[list[ReferenceEntry], list[TokenEntry]]:
    """Reference rows and ``:identifier`` token rows of one value (R4 §3.1.1.5.11)."""
    target, identifier = reference_parts(value)
    return ([ReferenceEntry(param, *target)] if target else [],
            [TokenEntry(f"{param}:identifier", *identifier)] if identifier else [])


@functools.lru_cache(maxsize=_CACHED)
def parse_reference(text: str) -> tuple[str | None, str | None, str | None] | None:
    """(type, id, url) of a literal reference: ``Type/id[/_history/v]`` gives type and id, an
    absolute URL or URN (and canonical, ``|version`` dropped) gives url."""
    if "://" in text or text.startswith("urn:"):
        return None, None, text.split("|")[0]
    parts = text.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2 and parts[-2][:1].isupper() and parts[-1]:
        return parts[-2], parts[-1], None
    return None


def date_ranges(value: Any) -> Iterator[tuple[int, int]]:
    """Date ranges of one value: date/dateTime/instant, Period, Timing events (§3.1.1.5.7)."""
    if isinstance(value, str):
        try:
            yield date_range(value)
        except (ValueError, OverflowError):
            return
    elif isinstance(value, dict):
        if "start" in value or "end" in value:  # Period
            try:
                start = date_range(value["start"]) if isinstance(value.get("start"), str) \
                    else (MIN_MICROS, MIN_MICROS)
                end = date_range(value["end"]) if isinstance(value.get("end"), str) \
                    else (MAX_MICROS, MAX_MICROS)
            except (ValueError, OverflowError):
                return
            # a reversed Period (bad data) still covers the span between its two ends
            yield min(start[0], end[0]), max(start[1], end[1])
        elif "event" in value:  # Timing
            for event in value.get("event", ()):
                yield from date_ranges(event)


def number_parts(value: Any) -> tuple[float, float, float] | None:
    """(value, low, high) of a number with the range its precision implies (§3.1.1.5.9)."""
    if isinstance(value, bool):
        return None
    return _number(str(value))


@functools.lru_cache(maxsize=_CACHED)
def _number(text: str) -> tuple[float, float, float] | None:
    try:
        number, low, high = decimal_range(text)
    except (InvalidOperation, ValueError):
        return None
    return float(number), float(low), float(high)


def number_rows(param: str, value: Any) -> list[NumberEntry]:
    """A number row with the range its precision implies (§3.1.1.5.9)."""
    found = number_parts(value)
    return [NumberEntry(param, *found)] if found else []


def _bound(value: Any) -> tuple[Decimal, Decimal, Decimal] | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return decimal_range(str(value))
    except (InvalidOperation, ValueError):
        return None


def quantity_parts(value: Any) -> tuple[Tail, ...]:
    """What a Quantity (Age, Duration...), Money or Range gives a quantity parameter: the
    fields of ``QuantityEntry`` after ``param`` (§3.1.1.5.10)."""
    if not isinstance(value, dict):
        return ()
    if "low" in value or "high" in value:  # Range: one interval from low to high
        low_q, high_q = value.get("low"), value.get("high")
        low_q = low_q if isinstance(low_q, dict) else {}
        high_q = high_q if isinstance(high_q, dict) else {}
        low_b, high_b = _bound(low_q.get("value")), _bound(high_q.get("value"))
        if low_b is None and high_b is None:
            return ()
        unit_q = low_q if low_b is not None else high_q
        lo = low_b[1] if low_b else None
        hi = high_b[2] if high_b else None
        if lo is not None and hi is not None and lo > hi:  # a reversed Range covers its span
            lo, hi = high_b[1], low_b[2]  # type: ignore[index]
        middle = low_b[0] if low_b is not None else high_b[0]  # type: ignore[index]
        return (_quantity(unit_q, middle, lo, hi),)
    number = value.get("value")
    if isinstance(number, bool) or number is None:
        return ()
    if "currency" in value:  # Money
        bounds = _bound(number)
        if bounds is None:
            return ()
        return ((CURRENCY, _text(value["currency"]), float(bounds[0]), float(bounds[1]),
                 float(bounds[2]), None, None, None, None),)
    found = _measure(str(number), *(_text(value.get(key)) for key in ("system", "code", "unit")))
    return (found,) if found else ()


@functools.lru_cache(maxsize=_CACHED)
def _measure(number: str, system: str | None, code: str | None, unit: str | None
             ) -> Tail | None:
    """The parts of a plain Quantity; its fields are all texts, so equal ones share them."""
    try:
        bounds = decimal_range(number)
    except (InvalidOperation, ValueError):
        return None
    return _quantity({"system": system, "code": code, "unit": unit}, *bounds)


def quantity_rows(param: str, value: Any) -> list[QuantityEntry]:
    """Quantity rows of a Quantity (Age, Duration...), Money or Range (§3.1.1.5.10)."""
    return [QuantityEntry(param, *part) for part in quantity_parts(value)]


def _quantity(quantity: dict[str, Any], number: Decimal,
              low: Decimal | None, high: Decimal | None) -> Tail:
    system, code, unit = (_text(quantity.get(key)) for key in ("system", "code", "unit"))
    canonical = None
    if system == UCUM and isinstance(code, str) and low is not None and high is not None:
        canonical = canonical_range(low, high, code)
    return (system, code if code is not None else unit, float(number),
            float(low) if low is not None else _NO_LOW,
            float(high) if high is not None else _NO_HIGH,
            unit, *(canonical if canonical else (None, None, None)))


def uri_rows(param: str, value: Any) -> list[UriEntry]:
    """A uri row, matched as written (§3.1.1.5.13)."""
    return [UriEntry(param, value)] if isinstance(value, str) else []
