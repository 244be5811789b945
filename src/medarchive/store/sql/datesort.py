"""Searches sorted by a date parameter, read in the order of ``idx_date_sort``.

``idx_date_sort`` (migration 0012) holds one row per resource and date parameter: ``low`` the
smallest low bound of its values, ``high`` the largest high bound, which are exactly the values
``_sort=date`` and ``_sort=-date`` sort by (R4 §3.1.1.4.3, ``fhir.search.match.sort_value``),
and ``span``, the class of ``high - low`` (``SPAN_LIMITS``). Two covering indexes,
``(res_type, param, span, low, rid, high)`` and ``(res_type, param, span, high DESC, rid, low)``,
give the rows of one class in sort order, ties by rid.

A page reads each span class in sort order and merges the four (``UNION ALL ... ORDER BY ...
LIMIT``). Date predicates on the sorted parameter become bounds on that read: any prefix implies
the resource's ``high`` is at least some h and/or its ``low`` at most some l (``_bounds``); the
sort column takes its own bound directly and, within a class whose width is below W, the other
one shifted by W (``high >= h`` means ``low > h - W``), so every class is one short index range.
A predicate those bounds do not capture exactly (``eq``, ``ap``, ``sa``, ``eb``, ``ne``, several
values) is checked on ``idx_date`` for each candidate; other predicates are probed per candidate
too (``Compiler.correlated``). Resources without a value come after the others, in rid order,
read only when the valued ones do not fill the page. Counting a date-only search adds the
classes' index-range counts.

Reading in sort order and filtering is fast when the other predicates match many resources, or
when date predicates bound the read to a few rows; when the others match few and the read is not
bounded that tightly, sorting the matches (the plan of ``store.sql.query``) is faster. So the
store first counts up to ``PROBE`` rows within the bounds (``range_rows_sql``; a NEWS2 pass asks
for the vital signs newer than the newest device reading: a handful), then, if there are that
many, up to ``PROBE`` matches of the others (``probe_query``), and chooses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from medarchive.crypto.blind import BlindIndex, blinded
from medarchive.fhir.search.entries import DateEntry
from medarchive.fhir.search.query import Clause, Predicate, RangeValue, SearchQuery, SortKey
from medarchive.store.sql.predicates import Compiler, plain_index, range_sql

__all__ = ["PROBE", "SPAN_LIMITS", "date_count_sql", "date_sort_sql", "probe_query",
           "range_rows_sql", "sort_rows", "sortable", "span_class"]

_DAY = 86_400_000_000  # microseconds
SPAN_LIMITS = (_DAY, 32 * _DAY, 367 * _DAY)
"""Exclusive upper limits of ``high - low`` of span classes 0, 1 and 2 (a day, a month, a year
at their precision fit in 0, 1 and 2); class 3 is every wider range (periods, several values)."""
PROBE = 1000
"""Below this many matches of the other predicates, sorting the matches beats the index read."""
_EXACT = ("ge", "gt", "le", "lt")


def span_class(low: int, high: int) -> int:
    """The span class of a [low, high] range."""
    for n, limit in enumerate(SPAN_LIMITS):
        if high - low < limit:
            return n
    return len(SPAN_LIMITS)


def sort_rows(rid: int, resource_type: str, dates: Sequence[DateEntry]
              ) -> list[tuple[int, str, str, int, int, int]]:
    """The ``idx_date_sort`` rows of one resource: per parameter, smallest low, largest high
    and their span class."""
    ranges: dict[str, tuple[int, int]] = {}
    for entry in dates:
        low, high = ranges.get(entry.param, (entry.low, entry.high))
        ranges[entry.param] = (min(low, entry.low), max(high, entry.high))
    return [(rid, resource_type, param, low, high, span_class(low, high))
            for param, (low, high) in sorted(ranges.items())]


def _value_bounds(value: RangeValue) -> tuple[int | None, int | None]:
    """(h, l): a resource with a value matching ``value`` has high >= h and low <= l."""
    a, b = int(value.low), int(value.high)
    return {"ge": (a, None), "gt": (b + 1, None), "sa": (b + 1, None),
            "le": (None, b), "lt": (None, a - 1), "eb": (None, a - 1),
            "eq": (a, b), "ap": (a, b)}.get(value.prefix, (None, None))


def _bounds(predicates: Sequence[Predicate]) -> tuple[int | None, int | None]:
    """(h, l) implied by all ``predicates`` (values ORed, predicates ANDed)."""
    h: int | None = None
    lo: int | None = None
    for predicate in predicates:
        pairs = [_value_bounds(v) for v in predicate.values if isinstance(v, RangeValue)]
        if not pairs or len(pairs) != len(predicate.values):
            continue
        highs = [p[0] for p in pairs]
        lows = [p[1] for p in pairs]
        if None not in highs:
            least = min(x for x in highs if x is not None)
            h = least if h is None else max(h, least)
        if None not in lows:
            most = max(x for x in lows if x is not None)
            lo = most if lo is None else min(lo, most)
    return h, lo


def _exact(predicate: Predicate) -> bool:
    """Whether ``_bounds`` captures the predicate exactly (one ge/gt/le/lt value)."""
    return len(predicate.values) == 1 and isinstance(predicate.values[0], RangeValue) and \
        predicate.values[0].prefix in _EXACT


def _on(predicate: Clause, param: str) -> bool:
    return isinstance(predicate, Predicate) and predicate.kind == "date" and \
        predicate.param == param and plain_index(predicate) and predicate.modifier is None \
        and not predicate.sources  # a union has no rows of its own here


def sortable(query: SearchQuery, blind: BlindIndex | None = None) -> SortKey | None:
    """The sort key when ``query`` can be read from ``idx_date_sort``: one resource type,
    sorted by one date parameter (that is not blinded)."""
    if not query.resource_type or len(query.sort) != 1 or query.sort[0].kind != "date":
        return None
    key = query.sort[0]
    if key.param.startswith("_") or key.sources:  # _lastUpdated is a resource column; a
        return None  # union parameter has no rows of its own
    if blind is not None and blinded(query.resource_type, "date", key.param):
        return None
    return key


def range_rows_sql(query: SearchQuery, key: SortKey, limit: int
                   ) -> tuple[str, list[Any]] | None:
    """How many ``idx_date_sort`` rows lie within the bounds the date predicates on the
    sorted parameter give (at most ``limit`` per span class): the most a read in sort order
    visits. None when those predicates give no bound."""
    h, lo = _bounds([c for c in query.predicates if isinstance(c, Predicate) and
                     _on(c, key.param)])
    if h is None and lo is None:
        return None
    selects: list[str] = []
    params: list[Any] = []
    for span in range(len(SPAN_LIMITS) + 1):
        parts = _class_parts(query, key, span, h, lo)
        selects.append(f"SELECT COUNT(*) AS c FROM (SELECT 1 FROM idx_date_sort s WHERE "
                       f"{' AND '.join(parts.text)} LIMIT {int(limit)}) b{span}")
        params += parts.params
    return f"SELECT SUM(c) FROM ({' UNION ALL '.join(selects)}) t", params


def probe_query(query: SearchQuery, key: SortKey) -> SearchQuery | None:
    """The query of the predicates other than dates on the sorted parameter, whose matches
    decide the plan; None when there are none (the index read is then always right)."""
    others = tuple(c for c in query.predicates if not _on(c, key.param))
    if not others:
        return None
    return replace(query, predicates=others, sort=(), offset=0)


@dataclass
class _Parts:
    """SQL fragments with their parameters, in text order."""

    text: list[str]
    params: list[Any]

    def add(self, text: str, *params: Any) -> None:
        self.text.append(text)
        self.params += params


def _filters(query: SearchQuery, param: str, rid: str, dialect: str,
             blind: BlindIndex | None) -> tuple[list[str], list[Any], bool]:
    """Conditions for every predicate not captured by the bounds: date predicates on ``param``
    checked on ``idx_date``, others probed per candidate (or, when they cannot be, compiled as
    usual on the joined ``resource r``). Returns (conditions, params, needs resource r)."""
    compiler = Compiler(dialect, blind)
    conditions: list[str] = []
    joined = False
    for clause in query.predicates:
        if _on(clause, param):
            assert isinstance(clause, Predicate)
            if _exact(clause):
                continue
            e = compiler.alias("d")
            compiler.params += [param]
            alternatives = []
            for value in clause.values:
                assert isinstance(value, RangeValue)
                text, params = range_sql(value.prefix, f"{e}.low", f"{e}.high", int(value.low),
                                         int(value.high))
                alternatives.append(text)
                compiler.params += params
            conditions.append(f"EXISTS (SELECT 1 FROM idx_date {e} WHERE {e}.rid = {rid} AND "
                              f"{e}.param = ? AND ({' OR '.join(alternatives)}))")
            continue
        probe = compiler.correlated(clause, rid, query.resource_type) \
            if isinstance(clause, Predicate) else None
        if probe is None:
            probe = compiler.clause(clause, "r", query.resource_type)
            joined = True
        conditions.append(probe)
    return conditions, compiler.params, joined


def _class_bounds(span: int, column: str, h: int | None, lo: int | None
                  ) -> list[tuple[str, int]]:
    """(condition, value) bounds on ``s.<column>`` for one span class."""
    width = SPAN_LIMITS[span] - 1 if span < len(SPAN_LIMITS) else None
    bounds: list[tuple[str, int]] = []
    if column == "low":
        if h is not None and width is not None:
            bounds.append(("s.low >= ?", h - width))
        if lo is not None:
            bounds.append(("s.low <= ?", lo))
        if h is not None:
            bounds.append(("s.high >= ?", h))
    else:
        if h is not None:
            bounds.append(("s.high >= ?", h))
        if lo is not None and width is not None:
            bounds.append(("s.high <= ?", lo + width))
        if lo is not None:
            bounds.append(("s.low <= ?", lo))
    return bounds


def _class_parts(query: SearchQuery, key: SortKey, span: int, h: int | None,
                 lo: int | None) -> _Parts:
    """The conditions that make one span class's rows of the sorted parameter one index range
    within the bounds (h, lo)."""
    parts = _Parts(["s.res_type = ?", "s.param = ?", f"s.span = {int(span)}"],
                   [query.resource_type, key.param])
    for text, value in _class_bounds(span, "high" if key.descending else "low", h, lo):
        parts.add(text, value)
    return parts


def _class_select(query: SearchQuery, key: SortKey, span: int, dialect: str,
                  blind: BlindIndex | None, limit: int | None) -> tuple[str, list[Any]]:
    """The rows of one span class that match, in sort order (at most ``limit``), or, with
    ``limit`` None, their count."""
    column = "high" if key.descending else "low"
    same = [c for c in query.predicates if _on(c, key.param)]
    h, lo = _bounds([c for c in same if isinstance(c, Predicate)])
    conditions, filter_params, joined = _filters(query, key.param, "s.rid", dialect, blind)
    hint = f" INDEXED BY idx_date_sort_{column}" if dialect == "sqlite" else ""
    source = f"idx_date_sort s{hint}" + (" JOIN resource r ON r.rid = s.rid" if joined else "")
    parts = _class_parts(query, key, span, h, lo)
    where = " AND ".join(parts.text + conditions)
    params = parts.params + filter_params
    if limit is None:
        return f"SELECT COUNT(*) AS c FROM {source} WHERE {where}", params
    order = f"s.{column}{' DESC' if key.descending else ''}, s.rid"
    return (f"SELECT s.rid AS rid, s.{column} AS s0 FROM {source} WHERE {where} "
            f"ORDER BY {order} LIMIT {int(limit)}", params)


def date_sort_sql(query: SearchQuery, key: SortKey, dialect: str = "sqlite",
                  blind: BlindIndex | None = None) -> tuple[str, list[Any], str]:
    """(inner, params, order): ``inner`` selects the page's ``rid`` (with ``n``, 1 for
    resources without a value, and ``s0``, the sort value) in sort order; ``order`` orders
    the page's rows (alias ``p``) the same way."""
    # limits and span classes are literals (integers): a prepared statement's generic plan
    # then still knows it reads a few rows of one class (PostgreSQL plans LIMIT $1 for many)
    wanted = int(query.offset) + int(query.count)
    page = f"LIMIT {int(query.count)} OFFSET {int(query.offset)}"
    selects: list[str] = []
    params: list[Any] = []
    for span in range(len(SPAN_LIMITS) + 1):
        sql, p = _class_select(query, key, span, dialect, blind, wanted)
        selects.append(f"SELECT 0 AS n, rid, s0 FROM ({sql}) c{span}")
        params += p
    valued = " UNION ALL ".join(selects)
    direction = " DESC" if key.descending else ""
    order = f"n, s0{direction}, rid"
    if any(_on(c, key.param) for c in query.predicates):  # every match has a value
        inner = f"SELECT n, rid, s0 FROM ({valued}) u ORDER BY {order} {page}"
        return inner, params, f"p.n, p.s0{direction}, p.rid"
    conditions, filter_params, _ = _filters(query, key.param, "r.rid", dialect, blind)
    missing = ["r.res_type = ?", "r.deleted = ?", "NOT EXISTS (SELECT 1 FROM idx_date_sort x "
               "WHERE x.rid = r.rid AND x.param = ?)", *conditions]
    # the resources without a value are read only when the valued ones do not fill the page:
    # a LIMIT of 0 stops before the first row on both databases (a WHERE guard does not)
    tail = (f"SELECT r.rid AS rid, CAST(NULL AS BIGINT) AS s0 FROM resource r "
            f"WHERE {' AND '.join(missing)} ORDER BY r.rid "
            f"LIMIT CASE WHEN (SELECT COUNT(*) FROM a) < {wanted} THEN {wanted} ELSE 0 END")
    inner = (f"WITH a AS ({valued}) SELECT n, rid, s0 FROM (SELECT n, rid, s0 FROM a "
             f"UNION ALL SELECT 1 AS n, rid, s0 FROM ({tail}) t) u "
             f"ORDER BY {order} {page}")
    params += [query.resource_type, False, key.param, *filter_params]
    return inner, params, f"p.n, p.s0{direction}, p.rid"


def date_count_sql(query: SearchQuery, dialect: str = "sqlite",
                   blind: BlindIndex | None = None) -> tuple[str, list[Any]] | None:
    """How many resources match a search whose every predicate is a date predicate on one
    parameter, from ``idx_date_sort``; None for other searches."""
    if not query.resource_type or not query.predicates:
        return None
    first = query.predicates[0]
    if not isinstance(first, Predicate) or not all(_on(c, first.param)
                                                   for c in query.predicates):
        return None
    if blind is not None and blinded(query.resource_type, "date", first.param):
        return None
    h, _ = _bounds(list(query.predicates))  # type: ignore[arg-type]
    key = SortKey(first.param, "date", descending=h is not None)  # read the bounded column
    selects: list[str] = []
    params: list[Any] = []
    for span in range(len(SPAN_LIMITS) + 1):
        sql, p = _class_select(query, key, span, dialect, blind, None)
        selects.append(sql)
        params += p
    return f"SELECT SUM(c) FROM ({' UNION ALL '.join(selects)}) t", params
