"""Turn the URL parameters of a FHIR search into a ``SearchQuery`` (R4 Search §3.1.1).

Values are split on unescaped commas (OR) and repeated parameters are ANDed (§3.1.1.5.5); the
escapes ``\\,`` ``\\|`` ``\\$`` and ``\\\\`` are honoured (§3.1.1.5.6 "Escaping"). Malformed
values are a 400; parameters this server does not know are reported back in ``unknown`` so the
caller can apply ``Prefer: handling=strict|lenient``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import InvalidOperation
from typing import Any

from medarchive.errors import BadRequest, NotImplementedYet
from medarchive.fhir.search.dates import search_date_range
from medarchive.fhir.search.index import INDEXED_TYPES, number_range
from medarchive.fhir.search.normalize import normalize_string
from medarchive.fhir.search.query import (
    Predicate,
    QuantityValue,
    RangeValue,
    ReferenceValue,
    SearchQuery,
    SortKey,
    StringValue,
    TokenValue,
    UriValue,
    Value,
)

RESULT_PARAMS = frozenset({"_summary", "_elements", "_format", "_pretty", "_total", "_include",
                           "_revinclude", "_contained", "_containedType"})
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
MODIFIERS = {"string": {"exact", "contains", "missing"}, "token": {"not", "missing"},
             "reference": {"missing"}, "date": {"missing"}, "number": {"missing"},
             "quantity": {"missing"}, "uri": {"missing"}}


@dataclass(frozen=True, slots=True)
class ParsedSearch:
    query: SearchQuery
    unknown: tuple[str, ...]
    self_params: tuple[tuple[str, str], ...]


def split_values(text: str) -> list[str]:
    """Split on commas not escaped by a backslash, then unescape (§3.1.1.5.6)."""
    values, current, i = [], [], 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in ",$|\\":
            current.append("\\" + text[i + 1])
            i += 2
            continue
        if char == ",":
            values.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    values.append("".join(current))
    return values


def _split_pipe(text: str) -> list[str]:
    parts, current, i = [], [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            current.append(text[i + 1])
            i += 2
            continue
        if text[i] == "|":
            parts.append("".join(current))
            current = []
        else:
            current.append(text[i])
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            i += 1
        out.append(text[i])
        i += 1
    return "".join(out)


def _prefixed(text: str) -> tuple[str, str]:
    if len(text) > 2 and text[:2] in PREFIXES and not text[:2].isdigit():
        return text[:2], text[2:]
    return "eq", text


def _token(text: str) -> TokenValue:
    parts = _split_pipe(text)
    if len(parts) == 1:
        return TokenValue(None, parts[0] or None)
    if len(parts) == 2:
        return TokenValue(parts[0], parts[1] or None)
    raise BadRequest(f"invalid token value {text!r}: expected [system]|[code]")


def _number(prefix: str, text: str) -> tuple[float, float]:
    try:
        value, low, high = number_range(text)
    except (InvalidOperation, ValueError):
        raise BadRequest(f"invalid number {text!r}") from None
    if prefix in ("eq", "ne", "ap"):
        return low, high
    return value, value


def _reference(text: str, type_modifier: str | None) -> ReferenceValue:
    plain = _unescape(text)
    if "://" in plain or plain.startswith("urn:"):
        return ReferenceValue(None, None, plain)
    parts = [p for p in plain.split("/") if p]
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) >= 2:
        if type_modifier and parts[-2] != type_modifier:
            raise BadRequest(f"reference {plain!r} does not match type modifier {type_modifier}")
        return ReferenceValue(parts[-2], parts[-1])
    if len(parts) == 1:
        return ReferenceValue(type_modifier, parts[0])
    raise BadRequest(f"invalid reference value {text!r}")


def parse_value(kind: str, text: str, modifier: str | None) -> Value:
    """One OR-alternative of a parameter value, per its SearchParamType (§3.1.1.5.x)."""
    if kind == "token":
        return _token(text)
    if kind == "string":
        plain = _unescape(text)
        return StringValue(plain if modifier == "exact" else normalize_string(plain))
    if kind == "reference":
        return _reference(text, modifier)
    if kind in ("date", "lastUpdated"):
        prefix, rest = _prefixed(text)
        low, high = search_date_range(rest)
        return RangeValue(prefix, low, high)
    if kind == "number":
        prefix, rest = _prefixed(text)
        return RangeValue(prefix, *_number(prefix, rest))
    if kind == "quantity":
        prefix, rest = _prefixed(text)
        parts = _split_pipe(rest)
        if len(parts) not in (1, 3):
            raise BadRequest(f"invalid quantity {text!r}: expected number or number|system|code")
        low, high = _number(prefix, parts[0])
        system = parts[1] or None if len(parts) == 3 else None
        code = parts[2] or None if len(parts) == 3 else None
        return QuantityValue(prefix, low, high, system, code)
    if kind == "uri":
        return UriValue(_unescape(text))
    raise BadRequest(f"unsupported parameter type {kind}")


def _missing(name: str, text: str) -> bool:
    if text not in ("true", "false"):
        raise BadRequest(f"{name}:missing takes true or false, not {text!r}")
    return text == "true"


def _sort(spec: Any, resource_type: str | None, text: str) -> tuple[SortKey, ...]:
    keys = []
    for item in text.split(","):
        descending = item.startswith("-")
        name = item[1:] if descending else item
        if name in ("_id", "_lastUpdated"):
            keys.append(SortKey(name, name, descending))
            continue
        params = spec.search_params(resource_type) if resource_type else {}
        param = params.get(name)
        if param is None or param.type not in INDEXED_TYPES:
            raise BadRequest(f"cannot sort by {name!r}: not a sortable search parameter")
        keys.append(SortKey(name, param.type, descending))
    return tuple(keys)


def _int(name: str, text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, not {text!r}") from None
    if value < low:
        raise BadRequest(f"{name} must be at least {low}")
    return value


def parse_search(spec: Any, resource_type: str | None, params: Sequence[tuple[str, str]], *,
                 default_count: int, max_count: int) -> ParsedSearch:
    """Parse search parameters for ``resource_type`` (None: system-level search)."""
    predicates: list[Predicate] = []
    unknown: list[str] = []
    understood: list[tuple[str, str]] = []
    sort: tuple[SortKey, ...] = ()
    count, offset = default_count, 0
    known = spec.search_params(resource_type) if resource_type else {}
    for raw_name, text in params:
        name, _, modifier = raw_name.partition(":")
        if name in RESULT_PARAMS:
            continue
        if name == "_count":
            count = min(_int("_count", text, 0), max_count)
        elif name == "_offset":
            offset = _int("_offset", text, 0)
        elif name == "_sort":
            sort = _sort(spec, resource_type, text)
        elif name == "_type" and resource_type is None:
            types = split_values(text)
            if len(types) != 1:
                raise NotImplementedYet("system search over several _type values is not "
                                        "supported yet; search each type")
            if not spec.is_resource_type(types[0]):
                raise BadRequest(f"unknown resource type {types[0]!r} in _type")
            resource_type = types[0]
            known = spec.search_params(resource_type)
        elif name in ("_id", "_lastUpdated"):
            kind = "id" if name == "_id" else "lastUpdated"
            if modifier == "missing":
                raise BadRequest(f"{name} is never missing")
            if modifier and not (kind == "id" and modifier == "not"):
                raise BadRequest(f"modifier :{modifier} is not supported on {name}")
            values = tuple(TokenValue(None, _unescape(v)) if kind == "id"
                           else parse_value("date", v, None) for v in split_values(text))
            predicates.append(Predicate(name, kind, values, modifier or None))
        else:
            param = known.get(name)
            if param is None or param.type not in INDEXED_TYPES or "." in name:
                unknown.append(raw_name)
                continue
            kind = param.type
            if modifier == "missing":
                predicates.append(Predicate(name, kind, (), "missing", _missing(raw_name, text)))
            else:
                type_modifier = None
                if modifier and kind == "reference" and modifier[:1].isupper():
                    if not spec.is_resource_type(modifier):
                        raise BadRequest(f"unknown resource type modifier :{modifier}")
                    type_modifier = modifier
                elif modifier and modifier not in MODIFIERS.get(kind, ()):
                    raise BadRequest(f"modifier :{modifier} is not supported on {kind} "
                                     f"parameter {name}")
                values = tuple(parse_value(kind, v, type_modifier or modifier or None)
                               for v in split_values(text))
                if any(isinstance(v, StringValue) and not v.value for v in values):
                    raise BadRequest(f"empty value for {name}")
                predicates.append(Predicate(name, kind, values,
                                            None if type_modifier else modifier or None))
        understood.append((raw_name, text))
    query = SearchQuery(resource_type, tuple(predicates), sort, count, offset)
    return ParsedSearch(query, tuple(unknown), tuple(understood))
