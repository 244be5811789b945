"""Turn the values a SearchParameter expression returns into index rows of its kind.

R4 Search §3.1.1.5 maps each datatype to what a parameter type matches: a CodeableConcept gives
one token per coding (its text and displays feed ``:text``), an Identifier a token (its type
feeds ``:of-type``), a HumanName or Address one string per part, a Period one date range, a
Range one quantity interval, a Reference a target (its identifier feeds ``:identifier``).
Everything here is a pure function of the values; ``fhir.search.index`` decides which
expression's values go where.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
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


def string_rows(param: str, value: Any) -> list[StringEntry]:
    """String rows: normalised for matching, as written for ``:exact`` (§3.1.1.5.8)."""
    return [StringEntry(param, normalize_string(text), text) for text in strings(value)]


def _text_rows(param: str, texts: Iterable[Any]) -> list[StringEntry]:
    """``:text`` rows: each text is searched like a string (R4 §3.1.1.5.10 ":text")."""
    return [StringEntry(f"{param}:text", normalize_string(text), text)
            for text in dict.fromkeys(t for t in texts if isinstance(t, str) and t)]


def token_rows(param: str, value: Any, implied: Mapping[str, str] | None = None
               ) -> tuple[list[TokenEntry], list[StringEntry]]:
    """Token rows and ``:text`` word rows of one value (R4 §3.1.1.5.10 "token").

    ``implied`` maps a bare ``code`` value to the system its required binding implies.
    """
    if isinstance(value, bool):
        return [TokenEntry(param, None, "true" if value else "false")], []
    if isinstance(value, str | int | Decimal | float):
        code = str(value)
        return [TokenEntry(param, implied.get(code) if implied else None, code)], []
    if not isinstance(value, dict):
        return [], []
    if "coding" in value or ("text" in value and "value" not in value):  # CodeableConcept
        codings = _dicts(value.get("coding"))
        tokens = [_coding(param, c) for c in codings
                  if _text(c.get("code")) is not None or _text(c.get("system")) is not None]
        texts = [value.get("text"), *(c.get("display") for c in codings)]
        return tokens, _text_rows(param, texts)
    if "value" in value and value["value"] is not None:  # Identifier, ContactPoint
        text = str(value["value"])
        tokens = [TokenEntry(param, _text(value.get("system")), text)]
        kind = value.get("type")
        if isinstance(kind, dict):
            tokens += [TokenEntry(f"{param}:of-type", _text(c.get("system")), text,
                                  _text(c.get("code")))
                       for c in _dicts(kind.get("coding")) if _text(c.get("code"))]
            return tokens, _text_rows(param, [kind.get("text")])
        return tokens, []
    if _text(value.get("code")) is not None or _text(value.get("system")) is not None:
        return [_coding(param, value)], _text_rows(param, [value.get("display")])  # Coding
    return [], []


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _coding(param: str, coding: dict[str, Any]) -> TokenEntry:
    return TokenEntry(param, _text(coding.get("system")), _text(coding.get("code")),
                      _text(coding.get("display")))


def reference_rows(param: str, value: Any) -> tuple[list[ReferenceEntry], list[TokenEntry]]:
    """Reference rows and ``:identifier`` token rows of one value (R4 §3.1.1.5.11)."""
    refs: list[ReferenceEntry] = []
    tokens: list[TokenEntry] = []
    text = value.get("reference") if isinstance(value, dict) else value
    if isinstance(value, dict) and isinstance(value.get("identifier"), dict):
        ident = value["identifier"]
        if ident.get("value") is not None:
            tokens.append(TokenEntry(f"{param}:identifier", ident.get("system"),
                                     str(ident["value"])))
    if isinstance(text, str) and text and not text.startswith("#"):
        parsed = parse_reference(text)
        if parsed is not None:
            refs.append(ReferenceEntry(param, *parsed))
    return refs, tokens


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


def number_rows(param: str, value: Any) -> list[NumberEntry]:
    """A number row with the range its precision implies (§3.1.1.5.9)."""
    if isinstance(value, bool):
        return []
    try:
        number, low, high = decimal_range(str(value))
    except (InvalidOperation, ValueError):
        return []
    return [NumberEntry(param, float(number), float(low), float(high))]


def _bound(value: Any) -> tuple[Decimal, Decimal, Decimal] | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return decimal_range(str(value))
    except (InvalidOperation, ValueError):
        return None


def quantity_rows(param: str, value: Any) -> list[QuantityEntry]:
    """Quantity rows of a Quantity (Age, Duration...), Money or Range (§3.1.1.5.10)."""
    if not isinstance(value, dict):
        return []
    if "low" in value or "high" in value:  # Range: one interval from low to high
        low_q, high_q = value.get("low"), value.get("high")
        low_q = low_q if isinstance(low_q, dict) else {}
        high_q = high_q if isinstance(high_q, dict) else {}
        low_b, high_b = _bound(low_q.get("value")), _bound(high_q.get("value"))
        if low_b is None and high_b is None:
            return []
        unit_q = low_q if low_b is not None else high_q
        lo = low_b[1] if low_b else None
        hi = high_b[2] if high_b else None
        if lo is not None and hi is not None and lo > hi:  # a reversed Range covers its span
            lo, hi = high_b[1], low_b[2]  # type: ignore[index]
        middle = low_b[0] if low_b is not None else high_b[0]  # type: ignore[index]
        return [_quantity(param, unit_q, middle, lo, hi)]
    bounds = _bound(value.get("value"))
    if bounds is None:
        return []
    if "currency" in value:  # Money
        return [QuantityEntry(param, CURRENCY, _text(value["currency"]), float(bounds[0]),
                              float(bounds[1]), float(bounds[2]))]
    return [_quantity(param, value, bounds[0], bounds[1], bounds[2])]


def _quantity(param: str, quantity: dict[str, Any], number: Decimal,
              low: Decimal | None, high: Decimal | None) -> QuantityEntry:
    system, code, unit = (_text(quantity.get(key)) for key in ("system", "code", "unit"))
    canonical = None
    if system == UCUM and isinstance(code, str) and low is not None and high is not None:
        canonical = canonical_range(low, high, code)
    return QuantityEntry(param, system, code if code is not None else unit, float(number),
                         float(low) if low is not None else _NO_LOW,
                         float(high) if high is not None else _NO_HIGH,
                         unit,
                         *(canonical if canonical else (None, None, None)))


def uri_rows(param: str, value: Any) -> list[UriEntry]:
    """A uri row, matched as written (§3.1.1.5.13)."""
    return [UriEntry(param, value)] if isinstance(value, str) else []
