"""Compile search clauses to SQL conditions that mean exactly what ``fhir.search.match`` and
``fhir.search.clauses`` mean.

A predicate becomes ``a.rid [NOT] IN (SELECT rid FROM idx_<kind> WHERE ...)`` against the typed
index tables, so each is answered from its own index and the planner combines them. A chain
becomes a join through ``idx_reference`` into the target's own conditions, ``_has`` the same in
the other direction, a compartment one lookup of the references to the compartment's resource:
all as subqueries, so the database does the work in one statement (never one query per
resource). Index rows exist only for current, not deleted versions, which is why positive
predicates need no join with ``resource``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from medarchive.crypto.blind import BLIND_TYPES, BlindIndex, blinded, everywhere
from medarchive.crypto.covering import CONTENT
from medarchive.fhir.search.query import (
    AllOf,
    AnyOf,
    Chain,
    Clause,
    CodeSetValue,
    Compartment,
    CompositeValue,
    Has,
    OfType,
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
from medarchive.store.sql.blinding import blind_value_sql, index_target, prefix_sql

TABLES = {"token": "idx_token", "string": "idx_string", "reference": "idx_reference",
          "date": "idx_date", "number": "idx_number", "quantity": "idx_quantity",
          "uri": "idx_uri", "composite": "idx_composite", "text": "idx_string"}
PRESENCE_TABLES = ("idx_param", *dict.fromkeys(TABLES.values()))
"""Where ``:missing`` looks for a parameter's value: a row under its own name in a typed table
(the indexer writes one only for a parameter with a value), or in ``idx_param``, which holds
the parameters with a value but no such row (``store.sql.indexing.index_rows``)."""
_TOP = "\U0010ffff"


def range_sql(prefix: str, low: str, high: str, vlow: Any, vhigh: Any) -> tuple[str, list[Any]]:
    """SQL for ``fhir.search.match.range_matches`` over columns ``low``/``high``.

    Stored ranges always have low <= high, so ``eq`` also bounds each column from both sides:
    redundant for the result, but it lets the planner see a narrow range on an indexed column.
    """
    if prefix == "eq":
        return f"({low} >= ? AND {low} <= ? AND {high} >= ? AND {high} <= ?)", \
            [vlow, vhigh, vlow, vhigh]
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


def _marks(count: int) -> str:
    return ", ".join("?" * count)


def _token_sql(value: TokenValue, system: str = "system", code: str = "code"
               ) -> tuple[str, list[Any]]:
    parts, params = [], []
    if value.code is not None:
        parts.append(f"{code} = ?")
        params.append(value.code)
    if value.system == "":
        parts.append(f"{system} IS NULL")
    elif value.system is not None:
        parts.append(f"{system} = ?")
        params.append(value.system)
    return ("(" + " AND ".join(parts) + ")" if parts else "1=1"), params


def _prefix_sql(column: str, prefix: str) -> tuple[str, list[Any]]:
    return f"({column} >= ? AND {column} < ?)", [prefix, prefix + _TOP]


class Compiler:
    """Turns clauses into SQL text with ``?`` placeholders; collects the parameters in order."""

    def __init__(self, dialect: str, blind: BlindIndex | None = None) -> None:
        self.dialect = dialect
        self.blind = blind  # encryption at rest: blinded parameters match on their HMACs
        self.params: list[Any] = []
        self._aliases = 0

    def alias(self, stem: str) -> str:
        self._aliases += 1
        return f"{stem}{self._aliases}"

    def _contains(self, column: str) -> str:
        return f"instr({column}, ?) > 0" if self.dialect == "sqlite" else \
            f"strpos({column}, ?) > 0"

    def clause(self, clause: Clause, alias: str, rtype: str | None) -> str:
        """A condition on the resource row ``alias`` (of type ``rtype`` when known)."""
        if isinstance(clause, Predicate):
            return self._predicate(clause, alias, rtype)
        if isinstance(clause, AllOf):
            return "(" + " AND ".join(self.clause(c, alias, rtype) for c in clause.clauses) + ")"
        if isinstance(clause, AnyOf):  # one IN over a UNION: planners drive it from the index
            return f"{alias}.rid IN ({self.rid_query(clause, rtype)})"
        if isinstance(clause, Has):
            return self._has(clause, alias, rtype)
        if isinstance(clause, Chain):
            return f"{alias}.rid IN ({self._chain(clause, rtype)})"
        if isinstance(clause, Compartment):
            return f"{alias}.rid IN ({self._compartment(clause, rtype)})"
        if isinstance(clause, OfType):
            return f"{alias}.rid IN ({self._of_type(clause, rtype)})"
        raise TypeError(f"not a search clause: {clause!r}")

    def rid_query(self, clause: Clause, rtype: str | None) -> str:
        """``SELECT rid ...`` of the resources (of ``rtype`` when known) satisfying ``clause``."""
        if isinstance(clause, AnyOf):
            return " UNION ".join(self.rid_query(c, rtype) for c in clause.clauses)
        if isinstance(clause, Chain):
            return self._chain(clause, rtype)
        if isinstance(clause, Compartment):
            return self._compartment(clause, rtype)
        if isinstance(clause, Has):
            return self._has_rids(clause, rtype)
        if isinstance(clause, OfType):
            return self._of_type(clause, rtype)
        if isinstance(clause, Predicate) and plain_index(clause):
            return self._index_rids(clause, rtype)
        t = self.alias("t")
        sql = f"SELECT {t}.rid FROM resource {t} WHERE {self._scope(t, rtype)}"
        return sql + self.clause(clause, t, rtype)

    def _scope(self, alias: str, rtype: str | None) -> str:
        """``alias.res_type = ? AND `` (unqualified when alias is empty), or nothing."""
        if rtype is None:
            return ""
        self.params.append(rtype)
        return f"{alias}.res_type = ? AND " if alias else "res_type = ? AND "

    def _resource_rows(self, rtype: str | None, clause: Clause | None, column: str) -> str:
        """``SELECT <column> FROM resource`` rows of ``rtype`` that satisfy ``clause``."""
        if column == "rid" and isinstance(clause, Predicate) and plain_index(clause):
            return self._index_rids(clause, rtype)  # index rows are current resources only
        t = self.alias("t")
        sql = f"SELECT {t}.{column} FROM resource {t} WHERE {self._scope(t, rtype)}"
        self.params.append(False)
        sql += f"{t}.deleted = ?"
        if clause is not None:
            sql += " AND " + self.clause(clause, t, rtype)
        return sql

    def _of_type(self, clause: OfType, rtype: str | None) -> str:
        """The rids of ``clause.resource_type`` satisfying its clause, decided with that type
        known (its typed index lookups); none when the search is of another type."""
        if rtype is not None and rtype != clause.resource_type:
            t = self.alias("t")
            return f"SELECT {t}.rid FROM resource {t} WHERE 1=0"
        return self._resource_rows(clause.resource_type, clause.clause, "rid")

    def _chain(self, chain: Chain, rtype: str | None) -> str:
        x = self.alias("x")
        sql = f"SELECT {x}.rid FROM idx_reference {x} WHERE {self._scope(x, rtype)}"
        self.params += [chain.param, chain.target_type]
        sql += f"{x}.param = ? AND {x}.target_type = ? AND {x}.target_id IN ("
        return sql + self._resource_rows(chain.target_type, chain.clause, "res_id") + ")"

    def _has(self, has: Has, alias: str, rtype: str | None) -> str:
        x = self.alias("x")
        head = f"{alias}.res_id IN (SELECT {x}.target_id" if rtype else \
            f"({alias}.res_type, {alias}.res_id) IN (SELECT {x}.target_type, {x}.target_id"
        sql = f"{head} FROM idx_reference {x} WHERE {self._scope(x, has.source_type)}"
        if has.param is not None:
            self.params.append(has.param)
            sql += f"{x}.param = ? AND "
        if rtype:
            self.params.append(rtype)
            sql += f"{x}.target_type = ?"
        else:
            sql += f"{x}.target_type IS NOT NULL"
        if has.clause is not None:
            sql += f" AND {x}.rid IN (" + self._resource_rows(has.source_type, has.clause,
                                                              "rid") + ")"
        return sql + ")"

    def _has_rids(self, has: Has, rtype: str | None) -> str:
        x, t = self.alias("x"), self.alias("t")
        sql = (f"SELECT {t}.rid FROM idx_reference {x} JOIN resource {t} ON "
               f"{t}.res_type = {x}.target_type AND {t}.res_id = {x}.target_id WHERE "
               f"{self._scope(x, has.source_type)}")
        if has.param is not None:
            self.params.append(has.param)
            sql += f"{x}.param = ? AND "
        if rtype:
            self.params.append(rtype)
            sql += f"{x}.target_type = ?"
        else:
            sql += f"{x}.target_type IS NOT NULL"
        if has.clause is not None:
            sql += f" AND {x}.rid IN (" + self._resource_rows(has.source_type, has.clause,
                                                              "rid") + ")"
        return sql

    def _compartment(self, compartment: Compartment, rtype: str | None) -> str:
        x = self.alias("x")
        links: dict[str, list[str]] = {}
        for link_type, param in compartment.links:
            if rtype is None or link_type == rtype:
                links.setdefault(link_type, []).append(param)
        self.params.append(compartment.compartment)
        sql = f"SELECT {x}.rid FROM idx_reference {x} WHERE {x}.target_type = ? AND "
        if compartment.id is None:
            sql += f"{x}.target_id IS NOT NULL AND "
        else:
            self.params.append(compartment.id)
            sql += f"{x}.target_id = ? AND "
        groups = []
        for link_type, params in sorted(links.items()):
            groups.append(f"({x}.res_type = ? AND {x}.param IN ({_marks(len(params))}))")
            self.params += [link_type, *params]
        sql += "(" + (" OR ".join(groups) or "1=0") + ")"
        if compartment.owner:
            t = self.alias("t")
            self.params.append(compartment.compartment)
            sql += f" UNION SELECT {t}.rid FROM resource {t} WHERE {t}.res_type = ?"
            if compartment.id is not None:
                self.params.append(compartment.id)
                sql += f" AND {t}.res_id = ?"
        return sql

    def _predicate(self, predicate: Predicate, alias: str, rtype: str | None) -> str:
        negate = "NOT " if predicate.modifier in ("not", "not-in") else ""
        if predicate.missing is not None:
            found = []
            for table in PRESENCE_TABLES:
                found.append(f"SELECT rid FROM {table} WHERE {self._scope('', rtype)}"
                             f"{self.param_in('', predicate.stored)}")
            return f"{alias}.rid {'NOT ' if predicate.missing else ''}IN " \
                   f"({' UNION ALL '.join(found)})"
        if predicate.kind == "id":
            ids = [v.code for v in predicate.values if isinstance(v, TokenValue)]
            self.params += ids
            return f"{alias}.res_id {negate}IN ({_marks(len(ids))})"
        if predicate.kind == "lastUpdated":
            parts = []
            for value in predicate.values:
                assert isinstance(value, RangeValue)
                clause, p = range_sql(value.prefix, f"{alias}.last_updated",
                                      f"{alias}.last_updated", int(value.low), int(value.high))
                parts.append(clause)
                self.params += p
            return f"{negate}({' OR '.join(parts)})"
        if predicate.kind == "text":
            return self._text(predicate, alias, rtype)
        return f"{alias}.rid {negate}IN ({self._index_rids(predicate, rtype)})"

    def param_in(self, alias: str, names: tuple[str, ...]) -> str:
        """``[alias.]param = ?`` for one parameter name, ``IN (...)`` for several."""
        column = f"{alias}.param" if alias else "param"
        self.params += names
        return f"{column} = ?" if len(names) == 1 else f"{column} IN ({_marks(len(names))})"

    def _index_rids(self, predicate: Predicate, rtype: str | None) -> str:
        """The rids whose index rows match one of the predicate's values (before ``:not``)."""
        names, table, kind = index_target(predicate, TABLES)
        if self.blind is None or not any(blinded(rtype, kind, name) for name in names):
            return self._plain_rids(predicate, names, table, "", rtype)
        if len(names) > 1:  # a union parameter with blinded rows: each source on its own
            return " UNION ".join(self._index_rids(replace(predicate, param=p, sources=()),
                                                   rtype) for p in predicate.stored)
        param = names[0]
        if rtype is not None or everywhere(kind, param):
            return " UNION ".join([self._blind_rids(predicate, param, kind, "", rtype),
                                   *self._covering_rids(predicate, param, kind, rtype)])
        return " UNION ".join([
            self._plain_rids(predicate, names, table, self._outside_blind(), None),
            self._blind_rids(predicate, param, kind, self._inside_blind(), None),
            *self._covering_rids(predicate, param, kind, None)])

    def _covering_rids(self, predicate: Predicate, param: str, kind: str, rtype: str | None
                       ) -> list[str]:
        """The lookups of the parameters covering a blinded string parameter, whose rows hold
        the ones its own leave out (``crypto.covering``), on ``rtype`` (every blinded type
        when None)."""
        if kind != "string" or predicate.modifier == "text" or self.blind is None:
            return []
        return [self._blind_rids(predicate, other, kind, "", each)
                for each in ((rtype,) if rtype is not None else sorted(BLIND_TYPES))
                for other in self.blind.covering(each).get(param, ())]

    def correlated(self, predicate: Predicate, rid: str, rtype: str | None) -> str | None:
        """``EXISTS`` over the predicate's index rows of the one resource whose rid is the
        column ``rid``: an index probe per candidate, for candidates read in another index's
        order. None when the predicate is not a plain index lookup on plain (unblinded) rows."""
        if not plain_index(predicate):
            return None
        names, table, kind = index_target(predicate, TABLES)
        if self.blind is not None and any(blinded(rtype, kind, name) for name in names):
            return None
        e = self.alias("e")
        sql = f"EXISTS (SELECT 1 FROM {table} {e} WHERE {e}.rid = {rid} AND " \
              f"{self._scope(e, rtype)}{self.param_in(e, names)} AND "
        alternatives = [self._value(predicate, value) for value in predicate.values]
        return sql + f"({' OR '.join(alternatives)}))"

    def _inside_blind(self) -> str:
        self.params += sorted(BLIND_TYPES)
        return f"res_type IN ({_marks(len(BLIND_TYPES))}) AND "

    def _outside_blind(self) -> str:
        self.params += sorted(BLIND_TYPES)
        return f"res_type NOT IN ({_marks(len(BLIND_TYPES))}) AND "

    def _plain_rids(self, predicate: Predicate, names: tuple[str, ...], table: str, scope: str,
                    rtype: str | None) -> str:
        sql = f"SELECT rid FROM {table} WHERE {scope}{self._scope('', rtype)}" \
              f"{self.param_in('', names)} AND "
        alternatives = [self._value(predicate, value) for value in predicate.values]
        return sql + f"({' OR '.join(alternatives)})"

    def _blind_rids(self, predicate: Predicate, param: str, kind: str, scope: str,
                    rtype: str | None) -> str:
        """Like ``_plain_rids`` on blind rows (blinded dates are string rows)."""
        assert self.blind is not None
        table = "idx_string" if kind == "date" else TABLES[kind]
        sql = f"SELECT rid FROM {table} WHERE {scope}{self._scope('', rtype)}"
        self.params.append(param)
        alternatives = []
        for value in predicate.values:
            clause, params = blind_value_sql(self.blind, predicate, param, value)
            self.params += params
            alternatives.append(clause)
        return sql + f"param = ? AND ({' OR '.join(alternatives)})"

    def _text(self, predicate: Predicate, alias: str, rtype: str | None) -> str:
        alternatives = []
        for value in predicate.values:
            assert isinstance(value, TextValue)
            words = [f"{alias}.rid IN ({self._word_rids(predicate.param, word, rtype)})"
                     for word in value.words]
            alternatives.append("(" + " AND ".join(words) + ")")
        return "(" + " OR ".join(alternatives) + ")"

    def _word_rids(self, param: str, word: str, rtype: str | None) -> str:
        """Rids with a ``_text``/``_content`` word starting with ``word``."""
        plain = self.blind is None or (rtype is not None and rtype not in BLIND_TYPES)
        parts = []
        if plain or rtype is None:
            scope = "" if plain else self._outside_blind()
            sql = f"SELECT rid FROM idx_string WHERE {scope}{self._scope('', rtype)}"
            self.params.append(param)
            clause, p = _prefix_sql("value", word)
            self.params += p
            parts.append(sql + f"param = ? AND {clause}")
        if not plain and self.blind is not None:
            scope = self._inside_blind() if rtype is None else ""
            parts.append(self._blind_word(param, word, scope, rtype))
            if param == CONTENT:
                parts += [self._blind_word(other, word, "", each)
                          for each in ((rtype,) if rtype is not None else sorted(BLIND_TYPES))
                          for other in self.blind.covering(each).get(param, ())]
        return " UNION ".join(parts)

    def _blind_word(self, param: str, word: str, scope: str, rtype: str | None) -> str:
        """Rids with a blind row of ``param`` for the prefix ``word``."""
        assert self.blind is not None
        sql = f"SELECT rid FROM idx_string WHERE {scope}{self._scope('', rtype)}"
        self.params.append(param)
        clause, p = prefix_sql(self.blind, param, word)
        self.params += p
        return sql + f"param = ? AND {clause}"

    def _value(self, predicate: Predicate, value: Value) -> str:
        """One OR-alternative as a condition on the index table's columns."""
        clause, params = self._value_sql(predicate, value)
        self.params += params
        return clause

    def _value_sql(self, predicate: Predicate, value: Value) -> tuple[str, list[Any]]:
        kind, modifier = predicate.kind, predicate.modifier
        if isinstance(value, CodeSetValue):
            groups: dict[str, list[str]] = {}
            for system, code in value.codes:
                groups.setdefault(system, []).append(code)
            parts, params = [], []
            for system, codes in sorted(groups.items()):
                parts.append(f"(system = ? AND code IN ({_marks(len(codes))}))")
                params += [system, *codes]
            return "(" + (" OR ".join(parts) or "1=0") + ")", params
        if isinstance(value, OfTypeValue):
            return "(system = ? AND display = ? AND code = ?)", [value.system, value.code,
                                                                  value.value]
        if isinstance(value, TokenValue):
            return _token_sql(value)
        if isinstance(value, StringValue):
            if modifier == "exact":
                return "exact = ?", [value.value]
            if modifier == "contains":
                return self._contains("value"), [value.value]
            return _prefix_sql("value", value.value)
        if isinstance(value, ReferenceValue):
            if value.url is not None:
                return "url = ?", [value.url]
            if value.target_type is None:
                return "target_id = ?", [value.target_id]
            return "(target_id = ? AND target_type = ?)", [value.target_id, value.target_type]
        if isinstance(value, RangeValue):
            low, high = (int(value.low), int(value.high)) if kind == "date" else \
                (value.low, value.high)
            return range_sql(value.prefix, "low", "high", low, high)
        if isinstance(value, QuantityValue):
            return _quantity_sql(value)
        if isinstance(value, UriValue):
            return _uri_sql(value.value, modifier)
        if isinstance(value, CompositeValue):
            return self._composite_sql(predicate.components, value)
        raise ValueError(f"unknown search value {value!r}")

    def _composite_sql(self, kinds: tuple[str, ...], value: CompositeValue
                       ) -> tuple[str, list[Any]]:
        canonical = any(isinstance(p, QuantityValue) and p.canonical for p in value.parts)
        parts: list[str] = ["canonical = ?"]
        params: list[Any] = [canonical]
        for n, (kind, part) in enumerate(zip(kinds, value.parts, strict=False), start=1):
            system, code, low, high = f"system{n}", f"code{n}", f"low{n}", f"high{n}"
            if isinstance(part, ReferenceValue):
                if part.url is not None:
                    parts.append(f"{code} = ?")
                    params.append(part.url)
                else:
                    parts.append(f"{code} = ?")
                    params.append(part.target_id)
                    if part.target_type is not None:
                        parts.append(f"{system} = ?")
                        params.append(part.target_type)
            elif isinstance(part, TokenValue):
                clause, p = _token_sql(part, system, code)
                parts.append(clause)
                params += p
            elif isinstance(part, StringValue):
                clause, p = _prefix_sql(code, part.value)
                parts.append(clause)
                params += p
            elif isinstance(part, UriValue):
                parts.append(f"{code} = ?")
                params.append(part.value)
            elif isinstance(part, RangeValue | QuantityValue):
                if isinstance(part, QuantityValue):
                    if part.system is not None:
                        parts.append(f"{system} = ?")
                        params.append(part.system)
                    if part.code is not None:
                        parts.append(f"{code} = ?")
                        params.append(part.code)
                clause, p = range_sql(part.prefix, low, high, part.low, part.high)
                parts.append(f"({low} IS NOT NULL AND {high} IS NOT NULL AND {clause})")
                params += p
            else:
                raise ValueError(f"unsupported composite part {kind}: {part!r}")
        return "(" + " AND ".join(parts) + ")", params


def plain_index(predicate: Predicate) -> bool:
    """A predicate answered by index rows alone (no negation, absence or resource column)."""
    return predicate.missing is None and predicate.modifier not in ("not", "not-in") and \
        predicate.kind not in ("id", "lastUpdated", "text")


def _quantity_sql(value: QuantityValue) -> tuple[str, list[Any]]:
    if value.canonical:
        clause, bounds = range_sql(value.prefix, "canonical_low", "canonical_high", value.low,
                                   value.high)
        return f"(canonical_code = ? AND {clause})", [value.code, *bounds]
    parts: list[str] = []
    params: list[Any] = []
    if value.system is not None:
        parts.append("system = ?")
        params.append(value.system)
        if value.code is not None:
            parts.append("code = ?")
            params.append(value.code)
    elif value.code is not None:
        parts.append("(code = ? OR unit = ?)")
        params += [value.code, value.code]
    clause, range_params = range_sql(value.prefix, "low", "high", value.low, value.high)
    return "(" + " AND ".join([*parts, clause]) + ")", [*params, *range_params]


def _uri_sql(value: str, modifier: str | None) -> tuple[str, list[Any]]:
    if modifier == "below":
        clause, params = _prefix_sql("value", value.rstrip("/") + "/")
        return f"(value = ? OR {clause})", [value, *params]
    if modifier == "above":  # stored s matches when rtrim(s, '/') + '/' starts value
        stems = list(dict.fromkeys(value[:i] for i, char in enumerate(value)
                                   if char == "/" and (i == 0 or value[i - 1] != "/")))
        if not stems:
            return "value = ?", [value]
        return f"(value = ? OR rtrim(value, '/') IN ({_marks(len(stems))}))", [value, *stems]
    return "value = ?", [value]
