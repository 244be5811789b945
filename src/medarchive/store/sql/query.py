"""The search statements: a page of matches, their count, and ``_include``/``_revinclude``.

Clauses compile through ``store.sql.predicates``. A page is selected in two steps inside one
statement: the inner query finds the page's row ids from ``resource`` and the index tables only
(sorting and skipping never touch resource bodies), the outer one joins just those rows to their
current version. Sort values follow ``fhir.search.match.sort_value`` (a resource's smallest value
ascending, largest descending, resources without a value last), ties are broken by ``rid`` so
paging is stable. The statement text uses ``?`` placeholders; ``Database.sql`` adapts it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from medarchive.crypto.blind import BlindIndex, blinded
from medarchive.errors import BadRequest
from medarchive.fhir.search.query import (
    AllOf,
    AnyOf,
    Chain,
    Clause,
    Compartment,
    Include,
    OfType,
    Predicate,
    SearchQuery,
    SortKey,
    TokenValue,
)
from medarchive.store.sql.datesort import date_count_sql, date_sort_sql, sortable
from medarchive.store.sql.predicates import TABLES, Compiler, plain_index, range_sql

__all__ = ["KEY_COLUMNS", "KEY_JOIN", "SELECT_VERSION", "VERSION_COLUMNS", "count_sql",
           "include_sql", "matches_sql", "range_sql", "search_sql"]

KEY_JOIN = " LEFT JOIN data_key k ON k.kid = v.kid"
KEY_COLUMNS = "k.kid, k.shredded"
"""The version's data key as the statement that reads the version sees it: its id (NULL for a
plaintext body, or when the key's row is missing) and when it was shredded (docs/encryption.md).
The body is opened with the key this row names (``store.sql.crypto.Keyring.unseal``)."""
VERSION_COLUMNS = ("r.res_type, r.res_id, v.version, v.last_updated, v.deleted, v.body, v.seq, "
                   f"{KEY_COLUMNS}")
"""The columns every version read selects; the last two come from ``KEY_JOIN``."""
SELECT_VERSION = (f"SELECT {VERSION_COLUMNS} FROM resource r JOIN resource_version v "
                  f"ON v.rid = r.rid AND v.version = r.version{KEY_JOIN}")
_SORT_COLUMNS = {"string": "value", "token": "code", "number": "value", "quantity": "value",
                 "uri": "value", "reference": "target_type || '/' || target_id"}
_NEVER_NULL = ("_id", "_lastUpdated")
_SORT_PRESENT = {"token": " AND code IS NOT NULL", "reference": " AND target_id IS NOT NULL"}


def _where(compiler: Compiler, query: SearchQuery, alias: str = "r") -> str:
    compiler.params.append(False)
    clauses = [f"{alias}.deleted = ?"]
    predicates: Sequence[Clause] = query.predicates
    if query.resource_type and _typed_by_index(compiler, query):
        predicates = sorted(predicates, key=_lookup_order)  # SQLite looks up the first one's
    elif query.resource_type:
        clauses.append(f"{alias}.res_type = ?")
        compiler.params.append(query.resource_type)
    elif query.types:
        clauses.append(f"{alias}.res_type IN ({', '.join('?' * len(query.types))})")
        compiler.params += list(query.types)
    for clause in predicates:
        clauses.append(compiler.clause(clause, alias, query.resource_type))
    return " AND ".join(clauses)


def _lookup_order(clause: Clause) -> int:
    """Which clause's rows to start from, smallest first: index predicates in
    ``_DRIVER_RANK`` order (a patient's references before a code's rows: usually the fewer),
    one value before several; then the others."""
    if isinstance(clause, Predicate) and plain_index(clause) and clause.kind in _DRIVER_RANK:
        return _DRIVER_RANK[clause.kind] + (0 if len(clause.values) == 1 else 10)
    return 100


def _typed_by_index(compiler: Compiler, query: SearchQuery) -> bool:
    """On SQLite, whether a predicate's index rows (all of ``query.resource_type``) already
    confine the matches to the type, so ``res_type = ?`` is left out: with it SQLite reads
    every resource of the type through ``(res_type, last_updated)`` and tests each against
    the predicates' row lists, instead of looking up the rows those lists name (a search with
    two such predicates and a sort read all 100,000 Observations for a patient's 5,000)."""
    return compiler.dialect == "sqlite" and any(
        isinstance(c, Predicate) and plain_index(c) for c in query.predicates)


def _collate(compiler: Compiler, expression: str) -> str:
    """Text sorts by code point on both backends (PostgreSQL's default collation does not)."""
    return f'({expression}) COLLATE "C"' if compiler.dialect == "postgresql" else expression


def _sort_expression(compiler: Compiler, key: SortKey, rtype: str | None) -> str:
    if compiler.blind is not None and any(blinded(rtype, key.kind, p) for p in key.stored):
        raise BadRequest(f"_sort={key.param} is not available: with encryption at rest its "
                         "values are kept only as blind indexes, which have no order "
                         "(docs/encryption.md)")
    if key.param == "_id":
        return _collate(compiler, "r.res_id")
    if key.param == "_lastUpdated":
        return "r.last_updated"
    aggregate = "MAX" if key.descending else "MIN"
    if key.kind == "date":
        column = "high" if key.descending else "low"
    else:
        column = _SORT_COLUMNS[key.kind]
        if key.kind in ("token", "reference"):
            column = _collate(compiler, column)
    return (f"(SELECT {aggregate}({column}) FROM {TABLES[key.kind]} s "
            f"WHERE s.rid = r.rid AND {compiler.param_in('s', key.stored)}"
            f"{_SORT_PRESENT.get(key.kind, '')})")


_DRIVER_RANK = {"reference": 0, "token": 1, "uri": 2, "composite": 3, "string": 4,
                "quantity": 5, "number": 5, "date": 6}


def _driver(query: SearchQuery) -> Predicate | None:
    """The predicate to read the page from, in rid order, when the query has no sort.

    Index rows exist only for current, not deleted resources of their own type, so a page of an
    unsorted search can be read from one predicate's index rows directly: with an equality on
    the leading index columns (a token code, a reference target, a uri) the rows come out in
    rid order and the first page is read without looking at the rest of the matches. The
    other clauses then only filter those rows.
    """
    if not query.resource_type or query.sort:
        return None
    candidates = [c for c in query.predicates if isinstance(c, Predicate) and plain_index(c)
                  and c.kind in _DRIVER_RANK]
    if not candidates:
        return None
    return min(candidates, key=_lookup_order)


def _driven(compiler: Compiler, query: SearchQuery, driver: Predicate) -> tuple[str, str]:
    """(FROM ... WHERE ...) reading matches from the driver's index rows, and the column of
    their rid."""
    source = compiler.rid_query(driver, query.resource_type)
    others = [c for c in query.predicates if c is not driver]
    if not others:
        return f"FROM ({source}) d", "d.rid"
    if all(map(_on_rid, others)):  # no join with resource per candidate row
        conditions = " AND ".join(compiler.clause(c, "d", query.resource_type) for c in others)
        return f"FROM ({source}) d WHERE {conditions}", "d.rid"
    conditions = " AND ".join(compiler.clause(c, "r", query.resource_type) for c in others)
    return f"FROM ({source}) d JOIN resource r ON r.rid = d.rid WHERE {conditions}", "d.rid"


def _on_rid(clause: Clause) -> bool:
    """Whether ``clause`` is a condition on its resource's rid alone (index lookups, chains,
    compartments, groups, the label narrowing), not on another column of ``resource``
    (``_id``, ``_lastUpdated``, and ``_has`` and ``_list``, which match ``res_id``)."""
    if isinstance(clause, Predicate):
        return clause.kind not in ("id", "lastUpdated")
    if isinstance(clause, AllOf):
        return all(map(_on_rid, clause.clauses))
    return isinstance(clause, Chain | Compartment | AnyOf | OfType)


def search_sql(query: SearchQuery, dialect: str = "sqlite",
               blind: BlindIndex | None = None, *,
               date_index: bool = False) -> tuple[str, list[Any]]:
    """One page of current versions matching ``query``, in its sort order (R4 §3.1.1.4.3).
    With ``blind``, blinded parameters are matched through their blind indexes. With
    ``date_index``, a sort by one date parameter reads ``idx_date_sort`` in order
    (``store.sql.datesort``; the store chooses, see ``SqlStore.search``)."""
    key = sortable(query, blind) if date_index else None
    if key is not None:
        inner, params, page_order = date_sort_sql(query, key, dialect, blind)
        return _page(inner, page_order), params
    compiler = Compiler(dialect, blind)
    driver = _driver(query)
    if driver is not None:
        source, rid = _driven(compiler, query, driver)
        compiler.params += [query.count, query.offset]
        inner = f"SELECT DISTINCT {rid} AS rid {source} ORDER BY {rid} LIMIT ? OFFSET ?"
        return _page(inner, "p.rid"), compiler.params
    columns = [f", {_sort_expression(compiler, key, query.resource_type)} AS s{n}"
               for n, key in enumerate(query.sort)]
    where = _where(compiler, query)
    params = compiler.params
    if query.sort:
        def order(alias: str) -> str:
            return ", ".join(("" if key.param in _NEVER_NULL else f"({alias}.s{n} IS NULL), ")
                             + f"{alias}.s{n}{' DESC' if key.descending else ''}"
                             for n, key in enumerate(query.sort)) + f", {alias}.rid"
        inner = (f"SELECT q.* FROM (SELECT r.rid AS rid{''.join(columns)} FROM resource r "
                 f"WHERE {where}) q ORDER BY {order('q')} LIMIT ? OFFSET ?")
        outer_order = order("p")
    else:
        inner = f"SELECT r.rid FROM resource r WHERE {where} ORDER BY r.rid LIMIT ? OFFSET ?"
        outer_order = "p.rid"
    params += [query.count, query.offset]
    return _page(inner, outer_order), params


def _page(inner: str, order: str) -> str:
    """The current versions of the rids ``inner`` selects, in ``order``."""
    return (f"SELECT {VERSION_COLUMNS} "
            f"FROM ({inner}) p JOIN resource r ON r.rid = p.rid "
            f"JOIN resource_version v ON v.rid = r.rid AND v.version = r.version{KEY_JOIN} "
            f"ORDER BY {order}")


def count_sql(query: SearchQuery, dialect: str = "sqlite", blind: BlindIndex | None = None,
              *, date_index: bool = False) -> tuple[str, list[Any]]:
    """How many current resources match (Bundle.total, R4 §3.1.1.3); with ``date_index``, a
    search on one date parameter only is counted on ``idx_date_sort``."""
    by_date = date_count_sql(query, dialect, blind) if date_index else None
    if by_date is not None:
        return by_date
    compiler = Compiler(dialect, blind)
    driver = _driver(query)
    if driver is not None:
        source, rid = _driven(compiler, query, driver)
        counted = "*" if blind is None and _one_row_each(driver) else f"DISTINCT {rid}"
        return f"SELECT COUNT({counted}) {source}", compiler.params
    where = _where(compiler, query)
    return f"SELECT COUNT(*) FROM resource r WHERE {where}", compiler.params


def _one_row_each(driver: Predicate) -> bool:
    """True when a resource has at most one index row matching ``driver``, so its matches
    are counted without DISTINCT (an index-only count, about half the work): one
    ``system|code`` token (the store keeps one row per resource, parameter, system and code,
    ``indexing.index_rows``) or one uri without modifier. Anything that can match several
    rows of a resource (a code in any system, several values, prefixes, references that may
    also be written as URLs, a union parameter's several sources) is counted DISTINCT."""
    if len(driver.values) != 1 or driver.sources:  # a union's sources may repeat a value
        return False
    value = driver.values[0]
    if driver.kind == "uri":
        return driver.modifier is None
    return driver.kind == "token" and driver.modifier in (None, "above", "below") and \
        isinstance(value, TokenValue) and value.system is not None and value.code is not None


def bounded_count_sql(query: SearchQuery, limit: int, dialect: str = "sqlite",
                      blind: BlindIndex | None = None) -> tuple[str, list[Any]]:
    """``count_sql`` that stops after ``limit`` matches: min(count, limit)."""
    driver = _driver(query)
    one_each = driver is not None and blind is None and _one_row_each(driver)
    sql, params = matches_sql(query, dialect, distinct=not one_each, blind=blind)
    return f"SELECT COUNT(*) FROM ({sql} LIMIT ?) m", [*params, limit]


def matches_sql(query: SearchQuery, dialect: str = "sqlite", *, distinct: bool = True,
                blind: BlindIndex | None = None) -> tuple[str, list[Any]]:
    """The rids of every match, unordered (what ``count_sql`` counts); without ``distinct``
    a rid may repeat when several index rows of the leading predicate match."""
    compiler = Compiler(dialect, blind)
    driver = _driver(query)
    if driver is not None:
        source, rid = _driven(compiler, query, driver)
        return f"SELECT {'DISTINCT ' if distinct else ''}{rid} {source}", compiler.params
    where = _where(compiler, query)
    return f"SELECT r.rid FROM resource r WHERE {where}", compiler.params


def include_sql(keys: Sequence[tuple[str, str]], include: Include, limit: int,
                dialect: str = "sqlite") -> tuple[str, list[Any]]:
    """Current resources an ``_include`` reaches from ``keys`` (forward: the targets of their
    references; reverse: the resources referring to them), by rid, at most ``limit``."""
    params: list[Any] = [False]
    by_type: dict[str, list[str]] = {}
    for rtype, rid in keys:
        by_type.setdefault(rtype, []).append(rid)
    if include.reverse:
        groups = []
        for rtype, ids in sorted(by_type.items()):
            if include.target_type and rtype != include.target_type:
                continue
            groups.append(f"(x.target_type = ? AND x.target_id IN ({', '.join('?' * len(ids))}))")
            params += [rtype, *ids]
        inner = "SELECT x.rid FROM idx_reference x WHERE x.res_type = ? AND "
        params.insert(1, include.source_type)
        if include.param is not None:
            inner += "x.param = ? AND "
            params.insert(2, include.param)
        inner += "(" + (" OR ".join(groups) or "1=0") + ")"
    else:
        ids = by_type.get(include.source_type, [])
        inner = ("SELECT t.rid FROM idx_reference x JOIN resource t ON "
                 "t.res_type = x.target_type AND t.res_id = x.target_id WHERE x.rid IN "
                 f"(SELECT s.rid FROM resource s WHERE s.res_type = ? AND s.res_id IN "
                 f"({', '.join('?' * len(ids)) or 'NULL'}))")
        params += [include.source_type, *ids]
        if include.param is not None:
            inner += " AND x.param = ?"
            params.append(include.param)
        if include.target_type is not None:
            inner += " AND x.target_type = ?"
            params.append(include.target_type)
    params.append(limit)
    return f"{SELECT_VERSION} WHERE r.deleted = ? AND r.rid IN ({inner}) ORDER BY r.rid " \
           f"LIMIT ?", params
