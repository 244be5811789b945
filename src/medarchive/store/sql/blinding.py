"""Search conditions on blind-index rows (``crypto.blind``): the SQL twin of the memory
store's matching for the values encryption at rest keeps only as HMACs.

A blinded string prefix is a range on the prefix chains the write stored (the rows whose chain
starts with the search text's); an ``:exact`` text, token code or ``eq`` birth date is one
equality on the HMAC the write stored; everything an HMAC cannot answer is refused with 400
and a message that says why, never answered wrongly.
"""

from __future__ import annotations

from typing import Any

from medarchive.crypto.blind import BlindIndex, search_form
from medarchive.errors import BadRequest
from medarchive.fhir.search.query import (
    CodeSetValue,
    OfTypeValue,
    Predicate,
    RangeValue,
    StringValue,
    TokenValue,
    Value,
)

_AFTER = "~"  # sorts after every base64url character: the end of a chain's range
_WHY = "with encryption at rest its values are kept only as blind indexes (docs/encryption.md)"


def index_target(predicate: Predicate, tables: dict[str, str]
                 ) -> tuple[tuple[str, ...], str, str]:
    """(params, table, kind) of the index rows a predicate reads, modifiers applied; params
    are several for a union parameter (``Predicate.sources``)."""
    if predicate.modifier == "text":
        return tuple(f"{p}:text" for p in predicate.stored), "idx_string", "string"
    if predicate.modifier in ("identifier", "of-type"):
        return tuple(f"{p}:{predicate.modifier}" for p in predicate.stored), "idx_token", \
            "token"
    return predicate.stored, tables[predicate.kind], predicate.kind


def prefix_sql(blind: BlindIndex, param: str, text: str) -> tuple[str, list[Any]]:
    """``value`` starts with ``text`` (string search, R4 §3.1.1.4.7), on blind rows."""
    if not text:
        return "1=1", []
    if len(text) > blind.max_prefix:
        raise BadRequest(f"{param}: search text longer than {blind.max_prefix} characters is "
                         f"not supported: {_WHY}")
    chain = blind.chain(param, text)
    return "(value >= ? AND value < ?)", [chain, chain + _AFTER]


def _token_sql(blind: BlindIndex, param: str, value: TokenValue) -> tuple[str, list[Any]]:
    parts, params = [], []
    if value.code is not None:
        parts.append("code = ?")
        params.append(blind.code(param, value.code))
    if value.system == "":
        parts.append("system IS NULL")
    elif value.system is not None:
        parts.append("system = ?")
        params.append(value.system)
    return ("(" + " AND ".join(parts) + ")" if parts else "1=1"), params


def blind_value_sql(blind: BlindIndex, predicate: Predicate, param: str,
                    value: Value) -> tuple[str, list[Any]]:
    """One OR-alternative of a blinded predicate as a condition on its blind rows."""
    if isinstance(value, StringValue):
        if predicate.modifier == "contains":
            raise BadRequest(f"{predicate.param}:contains is not supported: {_WHY}")
        if predicate.modifier == "exact":
            return "exact = ?", [blind.exact(param, value.value)]
        return prefix_sql(blind, param, value.value)
    if isinstance(value, TokenValue):
        return _token_sql(blind, param, value)
    if isinstance(value, CodeSetValue):
        groups: dict[str, list[str]] = {}
        for system, code in value.codes:
            groups.setdefault(system, []).append(blind.code(param, code))
        parts, params = [], []
        for system, codes in sorted(groups.items()):
            parts.append(f"(system = ? AND code IN ({', '.join('?' * len(codes))}))")
            params += [system, *codes]
        return "(" + (" OR ".join(parts) or "1=0") + ")", params
    if isinstance(value, OfTypeValue):
        return "(system = ? AND display = ? AND code = ?)", \
            [value.system, value.code, blind.code(param, value.value)]
    if isinstance(value, RangeValue):
        if value.prefix != "eq":
            raise BadRequest(f"{predicate.param}={value.prefix}...: only equality at year, "
                             f"month or day precision is supported: {_WHY}")
        return "value = ?", [blind.date(param, search_form(int(value.low), int(value.high)))]
    raise BadRequest(f"{predicate.param}: this kind of search is not supported: {_WHY}")
