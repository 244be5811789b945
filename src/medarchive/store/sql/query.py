"""Compile a ``SearchQuery`` to SQL that means exactly what ``fhir.search.match`` means.

Every predicate becomes ``r.rid [NOT] IN (SELECT rid FROM idx_<kind> WHERE ...)`` against the
typed index tables, so each is answered from its own index and the planner combines them. The
statement text uses ``?`` placeholders; ``Database.sql`` adapts it per driver.
"""

from __future__ import annotations

from typing import Any

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
)

_TABLES = {"token": "idx_token", "string": "idx_string", "reference": "idx_reference",
           "date": "idx_date", "number": "idx_number", "quantity": "idx_quantity",
           "uri": "idx_uri"}

SELECT_VERSION = ("SELECT r.res_type, r.res_id, v.version, v.last_updated, v.deleted, v.body, "
                  "v.seq FROM resource r JOIN resource_version v "
                  "ON v.rid = r.rid AND v.version = r.version")


def range_sql(prefix: str, low: str, high: str, vlow: Any, vhigh: Any) -> tuple[str, list[Any]]:
    """SQL for ``fhir.search.match.range_matches`` over columns ``low``/``high``."""
    if prefix == "eq":
        return f"({low} >= ? AND {high} <= ?)", [vlow, vhigh]
    if prefix == "ne":
        return f"NOT ({low} >= ? AND {high} <= ?)", [vlow, vhigh]
    if prefix == "gt":
        return f"{high} > ?", [vhigh]
    if prefix == "lt":
        return f"{low} < ?", [vlow]
    if prefix == "ge":
        return f"{high} >= ?", [vlow]
    if prefix == "le":
        return f"{low} <= ?", [vhigh]
    if prefix == "sa":
        return f"{low} > ?", [vhigh]
    if prefix == "eb":
        return f"{high} < ?", [vlow]
    if prefix == "ap":
        return f"({high} >= ? AND {low} <= ?)", [vlow, vhigh]
    raise ValueError(f"unknown prefix {prefix}")


def _prefix_bounds(prefix: str) -> tuple[str, str]:
    return prefix, prefix + "\U0010ffff"


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _value_sql(predicate: Predicate, value: Any) -> tuple[str, list[Any]]:
    kind = predicate.kind
    if kind == "token":
        assert isinstance(value, TokenValue)
        parts, params = [], []
        if value.code is not None:
            parts.append("code = ?")
            params.append(value.code)
        if value.system == "":
            parts.append("system IS NULL")
        elif value.system is not None:
            parts.append("system = ?")
            params.append(value.system)
        return ("(" + " AND ".join(parts) + ")" if parts else "1=1"), params
    if kind == "string":
        assert isinstance(value, StringValue)
        if predicate.modifier == "exact":
            return "exact = ?", [value.value]
        if predicate.modifier == "contains":
            return "value LIKE ? ESCAPE '\\'", [f"%{_escape_like(value.value)}%"]
        low, high = _prefix_bounds(value.value)
        return "(value >= ? AND value < ?)", [low, high]
    if kind == "reference":
        assert isinstance(value, ReferenceValue)
        if value.url is not None:
            return "url = ?", [value.url]
        if value.target_type is None:
            return "target_id = ?", [value.target_id]
        return "(target_id = ? AND target_type = ?)", [value.target_id, value.target_type]
    if kind in ("date", "number"):
        assert isinstance(value, RangeValue)
        return range_sql(value.prefix, "low", "high", value.low, value.high)
    if kind == "quantity":
        assert isinstance(value, QuantityValue)
        clause, params = range_sql(value.prefix, "low", "high", value.low, value.high)
        if value.code is not None:
            clause += " AND code = ?"
            params.append(value.code)
        if value.system is not None:
            clause += " AND system = ?"
            params.append(value.system)
        return f"({clause})", params
    if kind == "uri":
        assert isinstance(value, UriValue)
        return "value = ?", [value.value]
    raise ValueError(f"unknown search kind {kind}")


def _predicate_sql(predicate: Predicate, resource_type: str | None) -> tuple[str, list[Any]]:
    scope, scope_params = ("res_type = ? AND ", [resource_type]) if resource_type else ("", [])
    if predicate.missing is not None:
        negate = "" if not predicate.missing else "NOT "
        return (f"r.rid {negate}IN (SELECT rid FROM idx_param WHERE {scope}param = ?)",
                [*scope_params, predicate.param])
    negate = "NOT " if predicate.modifier == "not" else ""
    if predicate.kind == "id":
        ids = [v.code for v in predicate.values if isinstance(v, TokenValue)]
        return f"r.res_id {negate}IN ({', '.join('?' * len(ids))})", list(ids)
    if predicate.kind == "lastUpdated":
        parts, params = [], []
        for value in predicate.values:
            assert isinstance(value, RangeValue)
            clause, p = range_sql(value.prefix, "r.last_updated", "r.last_updated",
                                  int(value.low), int(value.high))
            parts.append(clause)
            params.extend(p)
        return f"{negate}({' OR '.join(parts)})", params
    table = _TABLES[predicate.kind]
    alternatives, params = [], []
    for value in predicate.values:
        clause, p = _value_sql(predicate, value)
        alternatives.append(clause)
        params.extend(p)
    return (f"r.rid {negate}IN (SELECT rid FROM {table} WHERE {scope}param = ? "
            f"AND ({' OR '.join(alternatives)}))", [*scope_params, predicate.param, *params])


def where_sql(query: SearchQuery) -> tuple[str, list[Any]]:
    clauses = ["r.deleted = ?"]
    params: list[Any] = [False]
    if query.resource_type:
        clauses.append("r.res_type = ?")
        params.append(query.resource_type)
    for predicate in query.predicates:
        clause, p = _predicate_sql(predicate, query.resource_type)
        clauses.append(clause)
        params.extend(p)
    return " AND ".join(clauses), params


_SORT_COLUMNS = {"string": "value", "token": "code", "number": "value", "quantity": "value",
                 "uri": "value", "reference": "target_type || '/' || target_id"}


def _sort_sql(key: SortKey) -> tuple[str, list[Any]]:
    direction = " DESC" if key.descending else ""
    if key.param == "_id":
        return f"r.res_id{direction}", []
    if key.param == "_lastUpdated":
        return f"r.last_updated{direction}", []
    aggregate = "MAX" if key.descending else "MIN"
    if key.kind == "date":
        column = "high" if key.descending else "low"
    else:
        column = _SORT_COLUMNS[key.kind]
    extra = " AND target_id IS NOT NULL" if key.kind == "reference" else (
        " AND code IS NOT NULL" if key.kind == "token" else "")
    expr = (f"(SELECT {aggregate}({column}) FROM {_TABLES[key.kind]} s "
            f"WHERE s.rid = r.rid AND s.param = ?{extra})")
    return f"{expr} IS NULL, {expr}{direction}", [key.param, key.param]


def search_sql(query: SearchQuery) -> tuple[str, list[Any]]:
    where, params = where_sql(query)
    order = []
    for key in query.sort:
        clause, p = _sort_sql(key)
        order.append(clause)
        params.extend(p)
    order.append("r.rid")
    params.extend([query.count, query.offset])
    return (f"{SELECT_VERSION} WHERE {where} ORDER BY {', '.join(order)} LIMIT ? OFFSET ?",
            params)


def count_sql(query: SearchQuery) -> tuple[str, list[Any]]:
    where, params = where_sql(query)
    return f"SELECT COUNT(*) FROM resource r WHERE {where}", params
