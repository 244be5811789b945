"""Turn the URL parameters of a FHIR search into a ``SearchQuery`` (R4 Search §3.1.1).

Values are split on unescaped commas (OR) and repeated parameters are ANDed (§3.1.1.5.5).
Parameter names may carry a modifier (§3.1.1.5.5 "Modifiers"), a chain (``subject:Patient.name``,
§3.1.1.5.11) or a reverse chain (``_has:Observation:patient:code``, §3.1.1.5.12). Malformed
values are a 400; parameters this server does not know are reported back in ``unknown`` so the
caller can apply ``Prefer: handling=strict|lenient`` (§3.1.1.3).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from medarchive.errors import BadRequest, NotImplementedYet
from medarchive.fhir.search import values as parse_values
from medarchive.fhir.search.index import INDEXED_TYPES, SEARCHABLE_TYPES
from medarchive.fhir.search.query import (
    AnyOf,
    Chain,
    Clause,
    CodeSetValue,
    Has,
    OfTypeValue,
    Predicate,
    SearchQuery,
    SortKey,
    StringValue,
    TextValue,
    TokenValue,
    Value,
)
from medarchive.fhir.search.text import words
from medarchive.fhir.search.unions import union_sources
from medarchive.fhir.search.values import split_on, split_values, unescape

__all__ = ["MODIFIERS", "RESULT_PARAMS", "ParsedSearch", "parse_clause", "parse_search",
           "split_values"]

RESULT_PARAMS = frozenset({"_summary", "_elements", "_format", "_pretty", "_total", "_include",
                           "_revinclude", "_contained", "_containedType"})
MODIFIERS = {"string": {"exact", "contains", "missing"},
             "token": {"missing", "text", "not", "above", "below", "in", "not-in", "of-type"},
             "reference": {"missing", "identifier"},
             "date": {"missing"}, "number": {"missing"}, "quantity": {"missing"},
             "uri": {"missing", "above", "below"}, "composite": {"missing"}}
MAX_CHAIN = 4  # chain links per parameter: deep enough for any real query, bounded for SQL
ValueSets = Callable[[str], "frozenset[tuple[str, str]] | None"]


@dataclass(frozen=True, slots=True)
class ParsedSearch:
    query: SearchQuery
    unknown: tuple[str, ...]
    self_params: tuple[tuple[str, str], ...]


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
        keys.append(SortKey(name, param.type, descending,
                            _union_of(spec, resource_type, name, param) if resource_type
                            else ()))
    return tuple(keys)


def _union_of(spec: Any, resource_type: str, code: str, param: Any) -> tuple[str, ...]:
    """The sources of ``code`` when it is a union parameter (``fhir.search.unions``); its
    expression is then a FHIRPath union, so the others are not looked up."""
    if "|" not in (param.expression or ""):
        return ()
    return union_sources(spec, resource_type).get(code, ())


def _int(name: str, text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, not {text!r}") from None
    if value < low:
        raise BadRequest(f"{name} must be at least {low}")
    return value


class _Parser:
    """Builds clauses for one search; ``valuesets`` expands ``:in``/``:not-in`` value sets."""

    def __init__(self, spec: Any, valuesets: ValueSets | None) -> None:
        self.spec = spec
        self.valuesets = valuesets

    def params(self, resource_type: str | None, types: Sequence[str] = ()) -> Mapping[str, Any]:
        if resource_type:
            return self.spec.search_params(resource_type)
        if not types:  # a system search: the parameters every resource has (_tag, ...)
            try:
                return self.spec.search_params("Resource")
            except KeyError:
                return {}
        common = dict(self.spec.search_params(types[0]))
        for other in types[1:]:
            theirs = self.spec.search_params(other)
            common = {code: p for code, p in common.items()
                      if code in theirs and theirs[code].type == p.type}
        return common

    def clause(self, resource_type: str | None, name: str, text: str, depth: int = 0,
               types: Sequence[str] = ()) -> Clause | None:
        """The clause of one parameter on ``resource_type``; None when it is unknown."""
        if depth > MAX_CHAIN:
            raise BadRequest(f"chain too deep (more than {MAX_CHAIN} links)")
        if name.startswith("_has:"):
            return self._has(resource_type, name, text, depth)
        if "." in name:
            return self._chain(resource_type, name, text, depth)
        code, _, modifier = name.partition(":")
        if code in ("_id", "_lastUpdated"):
            return self._resource_column(code, modifier, text)
        if code == "_list":
            return self._list(modifier, text)
        if code in ("_text", "_content"):
            return self._text(code, modifier, text)
        param = self.params(resource_type, types).get(code)
        if param is None or param.type not in SEARCHABLE_TYPES:
            return None
        predicate = self._predicate(code, param, modifier, text)
        sources = self._sources(code, param, resource_type, types)
        return replace(predicate, sources=sources) if sources else predicate

    def _sources(self, code: str, param: Any, resource_type: str | None,
                 types: Sequence[str]) -> tuple[str, ...]:
        """``Predicate.sources`` of parameter ``code``: on a search of several types, every
        type's (a type where it is no union reads its own rows)."""
        if resource_type:
            return _union_of(self.spec, resource_type, code, param)
        each = [union_sources(self.spec, t).get(code, ()) for t in types]
        if not any(each):
            return ()
        return tuple(sorted({name for found in each for name in (found or (code,))}))

    def _resource_column(self, code: str, modifier: str, text: str) -> Predicate:
        kind = "id" if code == "_id" else "lastUpdated"
        if modifier == "missing":
            raise BadRequest(f"{code} is never missing")
        if modifier and not (kind == "id" and modifier == "not"):
            raise BadRequest(f"modifier :{modifier} is not supported on {code}")
        found: tuple[Value, ...] = tuple(
            TokenValue(None, unescape(v)) if kind == "id" else parse_values.date(v)
            for v in split_values(text))
        return Predicate(code, kind, found, modifier or None)

    def _list(self, modifier: str, text: str) -> Clause:
        """``_list=id`` (R4 §3.1.1.4.9): resources that List/id refers to in ``entry.item``."""
        if modifier:
            raise BadRequest(f"modifier :{modifier} is not supported on _list")
        ids = [unescape(v) for v in split_values(text)]
        if any(not i or i.startswith("$") for i in ids):
            raise NotImplementedYet("functional lists (_list=$...) are not supported")
        return Has("List", "item", Predicate("_id", "id", tuple(TokenValue(None, i)
                                                                for i in ids)))

    def _text(self, code: str, modifier: str, text: str) -> Predicate:
        if modifier == "missing":
            return Predicate(code, "text", (), "missing", _missing(code, text))
        if modifier:
            raise BadRequest(f"modifier :{modifier} is not supported on {code}")
        found = tuple(TextValue(tuple(words(unescape(v)))) for v in split_values(text))
        if any(not v.words for v in found):
            raise BadRequest(f"{code} needs at least one word")
        return Predicate(code, "text", found)

    def _predicate(self, code: str, param: Any, modifier: str, text: str) -> Predicate:
        kind = param.type
        if modifier == "missing":
            return Predicate(code, kind, (), "missing", _missing(f"{code}:missing", text))
        components: tuple[str, ...] = ()
        if kind == "composite":
            components = tuple(self.spec.search_param_by_url(url).type
                               for url, _ in param.components)
        type_modifier = None
        if modifier and kind == "reference" and modifier[:1].isupper():
            if not self.spec.is_resource_type(modifier):
                raise BadRequest(f"unknown resource type modifier :{modifier}")
            type_modifier = modifier
        elif modifier and modifier not in MODIFIERS.get(kind, ()):
            raise BadRequest(f"modifier :{modifier} is not supported on {kind} parameter {code}")
        found = tuple(self._value(kind, modifier, type_modifier, components, v)
                      for v in split_values(text))
        return Predicate(code, kind, found, None if type_modifier else modifier or None,
                         components=components)

    def _value(self, kind: str, modifier: str, type_modifier: str | None,
               components: tuple[str, ...], text: str) -> Value:
        if kind == "composite":
            return parse_values.composite(components, text)
        if kind == "token" and modifier in ("in", "not-in"):
            url = unescape(text)
            codes = (self.valuesets or self.spec.valueset_codes)(url)
            if codes is None:
                raise BadRequest(f"value set {url!r} is unknown or cannot be expanded here")
            return CodeSetValue(url, tuple(sorted(codes)))
        if kind == "token" and modifier == "of-type":
            parts = split_on(text, "|")
            if len(parts) != 3 or not all(parts):
                raise BadRequest(f"invalid :of-type value {text!r}: expected "
                                 "[type system]|[type code]|[identifier value]")
            return OfTypeValue(*parts)
        if kind == "token" and modifier == "text":
            return parse_values.string(text, exact=False)
        if kind == "reference" and modifier == "identifier":
            return parse_values.token(text)
        return parse_values.simple(kind, text, type_modifier or modifier or None)

    def _chain(self, resource_type: str | None, name: str, text: str, depth: int
               ) -> Clause | None:
        """``param[:Type].rest`` (R4 §3.1.1.5.11): rest is searched on every possible target
        type that has it (the type modifier narrows them to one)."""
        if resource_type is None:
            return None
        head, _, rest = name.partition(".")
        code, _, type_modifier = head.partition(":")
        param = self.spec.search_params(resource_type).get(code)
        if param is None or param.type != "reference":
            return None
        if type_modifier and not self.spec.is_resource_type(type_modifier):
            raise BadRequest(f"unknown resource type modifier :{type_modifier}")
        targets = [type_modifier] if type_modifier else list(param.targets)
        if type_modifier and param.targets and type_modifier not in param.targets:
            raise BadRequest(f"{resource_type}.{code} cannot refer to {type_modifier}")
        chains: list[Clause] = []
        for target in targets:
            if not self.spec.is_resource_type(target):
                continue
            inner = self.clause(target, rest, text, depth + 1)
            if inner is not None:
                chains.append(Chain(code, target, inner))
        if not chains:
            return None
        return chains[0] if len(chains) == 1 else AnyOf(tuple(chains))

    def _has(self, resource_type: str | None, name: str, text: str, depth: int
             ) -> Clause | None:
        """``_has:Type:param:rest`` (R4 §3.1.1.5.12): some ``Type`` whose ``param`` refers to
        the resource matches ``rest``."""
        parts = name.split(":", 3)
        if len(parts) < 4 or not all(parts[1:]):
            raise BadRequest(f"invalid reverse chain {name!r}: expected _has:Type:param:name")
        _, source, code, rest = parts
        if not self.spec.is_resource_type(source):
            raise BadRequest(f"unknown resource type {source!r} in {name}")
        param = self.spec.search_params(source).get(code)
        if param is None or param.type != "reference":
            raise BadRequest(f"{source} has no reference search parameter {code!r}")
        if resource_type and param.targets and resource_type not in param.targets:
            raise BadRequest(f"{source}.{code} cannot refer to {resource_type}")
        inner = self.clause(source, rest, text, depth + 1)
        return None if inner is None else Has(source, code, inner)


def parse_clause(spec: Any, resource_type: str | None, name: str, text: str, *,
                 valuesets: ValueSets | None = None) -> Clause | None:
    """The clause of one ``name=text`` parameter (None if unknown); see ``parse_search``."""
    return _Parser(spec, valuesets).clause(resource_type, name, text)


def parse_search(spec: Any, resource_type: str | None, params: Sequence[tuple[str, str]], *,
                 default_count: int = 20, max_count: int = 1000,
                 valuesets: ValueSets | None = None) -> ParsedSearch:
    """Parse search parameters for ``resource_type`` (None: system-level search, R4 §3.1.1).

    ``valuesets`` expands a value set URL to (system, code) pairs for ``:in``/``:not-in``
    (default: the value sets of the R4 spec).
    """
    parser = _Parser(spec, valuesets)
    clauses: list[Clause] = []
    unknown: list[str] = []
    understood: list[tuple[str, str]] = []
    sort: tuple[SortKey, ...] = ()
    count, offset = default_count, 0
    types: tuple[str, ...] = ()
    for raw_name, text in params:
        if raw_name == "_type" and resource_type is None:
            types = tuple(dict.fromkeys(v.strip() for v in split_values(text) if v.strip()))
            for name in types:
                if not spec.is_resource_type(name):
                    raise BadRequest(f"unknown resource type {name!r} in _type")
            understood.append((raw_name, text))
    if len(types) == 1:
        resource_type, types = types[0], ()
    for raw_name, text in params:
        name = raw_name.partition(":")[0]
        if name in RESULT_PARAMS or raw_name == "_type":
            continue
        if name == "_count":
            count = min(_int("_count", text, 0), max_count)
        elif name == "_offset":
            offset = _int("_offset", text, 0)
        elif name == "_sort":
            sort = _sort(spec, resource_type, text)
        else:
            clause = parser.clause(resource_type, raw_name, text, types=types)
            if clause is None:
                unknown.append(raw_name)
                continue
            if isinstance(clause, Predicate) and any(
                    isinstance(v, StringValue) and not v.value for v in clause.values):
                raise BadRequest(f"empty value for {raw_name}")
            clauses.append(clause)
        understood.append((raw_name, text))
    query = SearchQuery(resource_type, tuple(clauses), sort, count, offset, types)
    return ParsedSearch(query, tuple(unknown), tuple(understood))
