"""Search-index extraction: the official R4 SearchParameter expressions run on every write.

For each resource type, every SearchParameter of the spec is compiled once (FHIRPath) and
evaluated on the resource; each result becomes index rows of its kind (R4 Search §3.1.1.5
"Search Parameter Types", see ``fhir.search.extract``). Composite parameters (§3.1.1.5.4) run
their component expressions on each element the parameter's own expression selects, so a
combination only matches when its parts come from the same element. ``_text`` and ``_content``
(§3.1.1.4) have no expression; their words come from ``fhir.search.text``.

A token parameter over an element of type ``code`` with a required binding gets the system the
bound value set implies (§3.1.1.5.10: "the system is implied by the binding"), so
``gender=http://hl7.org/fhir/administrative-gender|male`` finds what ``gender=male`` finds.

Extraction is on the write path of every ingestion, so it is compiled per resource type: the
plan of a type knows which top-level keys each parameter reads (``fhir.search.paths``) and, per
set of keys a resource has, which parameters can select anything at all; the others are not
evaluated. A value several parameters select (``Observation.code`` feeds ``code`` and the
composites) is converted once. Parameters that are unions of others (``combo-code``,
``fhir.search.unions``) are not extracted: their searches read the others' rows. Rows are
built as plain tuples, made unique, and only then typed; equal entries are shared between
resources (they are immutable).
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from medarchive.fhir.search.entries import (
    CompositeEntry,
    DateEntry,
    IndexEntries,
    NumberEntry,
    QuantityEntry,
    ReferenceEntry,
    StringEntry,
    TokenEntry,
    UriEntry,
)
from medarchive.fhir.search.extract import (
    date_ranges,
    number_parts,
    primitive_token,
    quantity_parts,
    reference_parts,
    string_parts,
    token_parts,
)
from medarchive.fhir.search.normalize import normalize_string
from medarchive.fhir.search.paths import PathExpression, compile_composite, compile_path
from medarchive.fhir.search.text import content_words, text_words
from medarchive.fhir.search.unions import union_sources
from medarchive.fhir.search.units import UCUM, number_range

log = logging.getLogger(__name__)

__all__ = ["INDEXED_TYPES", "SEARCHABLE_TYPES", "Indexer", "build_indexer", "number_range"]

# the simple parameter types; SEARCHABLE_TYPES adds composites (made of simple components)
INDEXED_TYPES = frozenset({"token", "string", "reference", "date", "number", "quantity", "uri"})
SEARCHABLE_TYPES = INDEXED_TYPES | {"composite"}
_MAX_COMBINATIONS = 256
_SHARED_ENTRIES = 32768  # per kind: entries kept for reuse by later resources
_KEY_SETS = 1024  # per type: key sets whose parameter selection is remembered
_SIMPLE_PATH = re.compile(r"^\(?([A-Z][A-Za-z]+(?:\.[a-z][A-Za-z]*)+)\)?$")
_EMPTY_SLOT = (None, None, None, None)
Slot = tuple[str | None, str | None, float | None, float | None]
Row = tuple[Any, ...]
Needs = tuple[tuple[frozenset[str], ...], ...]


def _plain(value: Any) -> Any:
    """FHIRPath results as JSON-like Python values (computed values carry ``to_json``)."""
    if isinstance(value, dict | str | bool | int | float | Decimal | list):
        return value
    for attribute in ("json", "to_json", "value"):
        found = getattr(value, attribute, None)
        if found is not None:
            return found() if callable(found) else found
    return str(value)


def implied_systems(spec: Any, expression: str) -> dict[str, str] | None:
    """code -> system for the ``code`` elements with a required binding that ``expression``
    selects by a plain path (``Patient.gender``); None when it selects none."""
    from medarchive.fhir.spec.expressions import split_union
    found: dict[str, str] = {}
    ambiguous: set[str] = set()
    for branch in split_union(expression):
        match = _SIMPLE_PATH.match(branch.strip())
        if not match:
            continue
        info = _element_at(spec, match.group(1).split("."))
        if info is None or tuple(info.types) != ("code",) or info.binding_strength != \
                "required" or not info.binding_valueset:
            continue
        codes = spec.valueset_codes(info.binding_valueset) or ()
        for system, code in codes:
            if found.get(code, system) != system:
                ambiguous.add(code)
            found[code] = system
    for code in ambiguous:
        found.pop(code, None)
    return found or None


def _element_at(spec: Any, steps: list[str]) -> Any:
    path, info = steps[0], None
    for step in steps[1:]:
        try:
            info = spec.elements(path)[step]
        except KeyError:
            return None
        path = info.child_path or (info.types[0] if len(info.types) == 1 else "")
        if not path:
            return info if step == steps[-1] else None
    return info


class _Rows:
    """The rows of one resource as tuples ``(param, *fields)`` per kind, in extraction order,
    and the conversions of its values already made."""

    __slots__ = (
        "_memo",
        "composites",
        "dates",
        "firsts",
        "numbers",
        "quantities",
        "references",
        "resource",
        "strings",
        "tokens",
        "uris",
    )

    def __init__(self, resource: dict[str, Any]) -> None:
        self.resource = resource
        self.tokens: list[Row] = []
        self.strings: list[Row] = []
        self.references: list[Row] = []
        self.dates: list[Row] = []
        self.numbers: list[Row] = []
        self.quantities: list[Row] = []
        self.uris: list[Row] = []
        self.composites: list[Row] = []
        self._memo: dict[int, tuple[Any, Any, Any]] = {}
        self.firsts: dict[Any, list[Any]] = {}  # see PathExpression.select

    def parts(self, convert: Callable[[Any], Any], value: dict[str, Any]) -> Any:
        """``convert(value)``, computed once per value of this resource (the memo holds the
        value, so its id is not reused while the memo lives)."""
        found = self._memo.get(id(value))
        if found is not None and found[0] is value and found[1] is convert:
            return found[2]
        made = convert(value)
        self._memo[id(value)] = (value, convert, made)
        return made

    def slots(self, kind: str, values: list[Any]) -> list[tuple[Slot, Slot | None]]:
        """``component_slots(kind, values)``, computed once per list of values (composites
        whose components read the same top-level element get the same list)."""
        found = self._memo.get(id(values))
        if found is not None and found[0] is values and found[1] == kind:
            return found[2]  # type: ignore[no-any-return]
        made = component_slots(kind, values, self)
        self._memo[id(values)] = (values, kind, made)
        return made


Extract = Callable[["_Param", list[Any], _Rows], bool]


@dataclass(frozen=True, slots=True)
class _Param:
    """One SearchParameter of one resource type, compiled.

    ``expression`` is a ``PathExpression`` or, with ``engine`` set, the FHIRPath engine's;
    a composite in fast form has ``parts`` instead and its components' kinds in ``kinds``
    (``components`` holds their engine expressions otherwise). ``needs`` lists, per branch, the
    sets of top-level keys that must each meet the resource's keys for the parameter to select
    anything; None when it must always be evaluated.
    """

    code: str
    kind: str
    extract: Extract
    expression: Any = None
    engine: bool = False
    implied: Mapping[str, str] | None = None
    kinds: tuple[str, ...] = ()
    components: tuple[Any, ...] = ()
    parts: tuple[tuple[PathExpression, tuple[PathExpression, ...]], ...] | None = None
    needs: Needs | None = None

    @property
    def padding(self) -> tuple[None, ...]:
        """The empty slots after this composite's components (``CompositeEntry`` has 3)."""
        return (None,) * 4 * max(0, 3 - len(self.kinds))


def _tokens(param: _Param, values: list[Any], rows: _Rows) -> bool:
    made = False
    name = param.code
    for value in values:
        if isinstance(value, dict):
            codes, types, texts = rows.parts(token_parts, value)
            if codes:
                made = True
                rows.tokens += [(name, *code) for code in codes]
            if types:
                of_type = f"{param.code}:of-type"
                rows.tokens += [(of_type, *kind) for kind in types]
            if texts:
                text = f"{param.code}:text"
                rows.strings += [(text, *found) for found in texts]
        else:
            token = primitive_token(value, param.implied)
            if token is not None:
                rows.tokens.append((param.code, *token, None))
                made = True
    return made


def _strings(param: _Param, values: list[Any], rows: _Rows) -> bool:
    made = False
    for value in values:
        if isinstance(value, str):
            rows.strings.append((param.code, normalize_string(value), value))
            made = True
        elif isinstance(value, dict):
            found = rows.parts(string_parts, value)
            if found:
                rows.strings += [(param.code, *text) for text in found]
                made = True
    return made


def _references(param: _Param, values: list[Any], rows: _Rows) -> bool:
    made = False
    for value in values:
        target, identifier = rows.parts(reference_parts, value) if isinstance(value, dict) \
            else reference_parts(value)
        if target is not None:
            rows.references.append((param.code, *target))
            made = True
        if identifier is not None:
            rows.tokens.append((f"{param.code}:identifier", *identifier, None))
            made = True
    return made


def _dates(param: _Param, values: list[Any], rows: _Rows) -> bool:
    found = [(param.code, low, high) for value in values for low, high in date_ranges(value)]
    rows.dates += found
    return bool(found)


def _numbers(param: _Param, values: list[Any], rows: _Rows) -> bool:
    found = [(param.code, *number) for number in map(number_parts, values) if number]
    rows.numbers += found
    return bool(found)


def _quantities(param: _Param, values: list[Any], rows: _Rows) -> bool:
    found = [(param.code, *quantity) for value in values if isinstance(value, dict)
             for quantity in rows.parts(quantity_parts, value)]
    rows.quantities += found
    return bool(found)


def _uris(param: _Param, values: list[Any], rows: _Rows) -> bool:
    found = [(param.code, value) for value in values if isinstance(value, str)]
    rows.uris += found
    return bool(found)


def _composites(param: _Param, values: list[Any], rows: _Rows) -> bool:
    """Composite rows through the engine: its components evaluated on each element."""
    made = False
    for element in values:
        if isinstance(element, dict):
            found = [[_plain(v) for v in expression.evaluate(element, {"resource": rows.resource})]
                     for expression in param.components]
            made = _combine(param, found, rows) or made
    return made


def _fast_composites(param: _Param, rows: _Rows) -> bool:
    """Composite rows through the fast path forms of ``param.parts``."""
    made = False
    resource = rows.resource
    for element_expression, components in param.parts or ():
        for element in element_expression.select(resource, rows.firsts):
            if isinstance(element, dict):
                made = _combine(param, [
                    component.select(element, rows.firsts) if element is resource
                    else component.evaluate(element) for component in components], rows) or made
    return made


def _combine(param: _Param, found: Sequence[list[Any]], rows: _Rows) -> bool:
    """Add the rows of one element's component values: every combination, plain and
    canonical; say whether there was any."""
    slots: list[list[tuple[Slot, Slot | None]]] = []
    for kind, values in zip(param.kinds, found, strict=True):
        part = rows.slots(kind, values)
        if not part:
            return False
        slots.append(part)
    code, padding = param.code, param.padding
    has_quantity = "quantity" in param.kinds
    out = rows.composites
    if len(slots) == 2 and len(slots[0]) == 1 and len(slots[1]) == 1:  # the common case
        (first, first_canonical), (second, second_canonical) = slots[0][0], slots[1][0]
        out.append((code, *first, *second, *padding, False))
        if has_quantity and first_canonical is not None and second_canonical is not None:
            out.append((code, *first_canonical, *second_canonical, *padding, True))
        return True
    for combination in itertools.islice(itertools.product(*slots), _MAX_COMBINATIONS):
        out.append((code, *itertools.chain.from_iterable(
            plain for plain, _ in combination[:3]), *padding, False))
        if has_quantity and all(canonical is not None for _, canonical in combination):
            out.append((code, *itertools.chain.from_iterable(
                canonical for _, canonical in combination[:3]), *padding,  # type: ignore[misc]
                True))
    return True


def component_slots(kind: str, values: list[Any], rows: _Rows
                    ) -> list[tuple[Slot, Slot | None]]:
    """The (plain, canonical) slots one composite component takes from its values.

    Non-quantity components are the same in both forms; a quantity has a canonical slot only
    when its unit converts (see ``CompositeEntry``).
    """
    slots: list[tuple[Slot, Slot | None]] = []
    for value in values:
        if kind == "token":
            if isinstance(value, dict):
                codes, types, _ = rows.parts(token_parts, value)
                for system, code, _display in codes + types:
                    slot: Slot = (system, code, None, None)
                    slots.append((slot, slot))
            else:
                token = primitive_token(value)
                if token is not None:
                    slot = (*token, None, None)
                    slots.append((slot, slot))
        elif kind == "reference":
            target = (rows.parts(reference_parts, value) if isinstance(value, dict)
                      else reference_parts(value))[0]
            if target is not None:
                slot = (target[0], target[1] if target[2] is None else target[2], None, None)
                slots.append((slot, slot))
        elif kind == "string":
            texts = rows.parts(string_parts, value) if isinstance(value, dict) else \
                ((normalize_string(value), value),) if isinstance(value, str) else ()
            for normalized, _text in texts:
                slot = (None, normalized, None, None)
                slots.append((slot, slot))
        elif kind == "uri":
            if isinstance(value, str):
                slot = (None, value, None, None)
                slots.append((slot, slot))
        elif kind == "date":
            for low, high in date_ranges(value):
                slot = (None, None, float(low), float(high))
                slots.append((slot, slot))
        elif kind == "number":
            number = number_parts(value)
            if number is not None:
                slot = (None, None, number[1], number[2])
                slots.append((slot, slot))
        elif kind == "quantity" and isinstance(value, dict):
            for system, code, _value, low, high, _unit, base, base_low, base_high in \
                    rows.parts(quantity_parts, value):
                canonical: Slot | None = None
                if base is not None:
                    canonical = (UCUM, base, base_low, base_high)
                slots.append(((system, code, low, high), canonical))
    return list(dict.fromkeys(slots))


_EXTRACT: dict[str, Extract] = {
    "token": _tokens, "string": _strings, "reference": _references, "date": _dates,
    "number": _numbers, "quantity": _quantities, "uri": _uris, "composite": _composites}


def _needs(expression: Any, parts: Any) -> Needs | None:
    """When a parameter can select anything, from the keys its paths read (see ``_Param``)."""
    if parts is not None:
        return tuple((element.keys,) if element.keys is not None else
                     tuple(c.keys for c in components if c.keys is not None)
                     for element, components in parts)
    if isinstance(expression, PathExpression) and expression.keys is not None:
        return ((expression.keys,),)
    return None


def _selected(params: Sequence[_Param], keys: Sequence[str]) -> tuple[_Param, ...]:
    present = frozenset(keys)
    return tuple(param for param in params if param.needs is None or any(
        all(not present.isdisjoint(needed) for needed in branch) for branch in param.needs))


def _typed(rows: list[Row], make: Callable[..., Any], shared: dict[Row, Any],
           values: slice = slice(None)) -> tuple[Any, ...]:
    """The distinct rows, in order, as entries; ``shared`` keeps entries for reuse by later
    resources. A row with a zero among its ``values`` is not shared: 0.0 and -0.0 are equal
    keys but distinct values."""
    if not rows:
        return ()
    out = []
    for row in dict.fromkeys(rows):
        entry = shared.get(row)
        if entry is None:
            entry = make(*row)
            if 0.0 not in row[values]:
                if len(shared) >= _SHARED_ENTRIES:
                    shared.clear()
                shared[row] = entry
        out.append(entry)
    return tuple(out)


class Indexer:
    """Callable that extracts IndexEntries for a resource; build one per process with the spec.

    ``full_text`` indexes ``_text`` and ``_content`` words (the largest part of the index);
    ``fast_paths`` answers plain-path expressions without the FHIRPath engine
    (``fhir.search.paths``; off only to check that both give the same rows).
    """

    def __init__(self, spec: Any, compile_expression: Callable[[str], Any], *,
                 full_text: bool = True, fast_paths: bool = True) -> None:
        self._spec = spec
        self._fast = fast_paths
        self._compile = compile_expression
        self._full_text = full_text
        self._plans: dict[str, tuple[_Param, ...]] = {}
        self._selections: dict[tuple[str, tuple[str, ...]], tuple[_Param, ...]] = {}
        self._shared: dict[type, dict[Row, Any]] = {kind: {} for kind in (
            TokenEntry, StringEntry, ReferenceEntry, DateEntry, NumberEntry, QuantityEntry,
            UriEntry, CompositeEntry)}

    @property
    def spec(self) -> Any:
        """The spec whose search parameters this indexer extracts."""
        return self._spec

    def _plan(self, resource_type: str) -> tuple[_Param, ...]:
        plan = self._plans.get(resource_type)
        if plan is None:
            unions = union_sources(self._spec, resource_type)  # searched through their sources
            plan = tuple(self._compile_param(resource_type, code, param)
                         for code, param in sorted(self._spec.search_params(
                             resource_type).items())
                         if param.type in SEARCHABLE_TYPES and param.expression and code not in (
                             "_id", "_lastUpdated") and code not in unions)
            self._plans[resource_type] = plan
        return plan

    def _compile_param(self, resource_type: str, code: str, param: Any) -> _Param:
        implied = implied_systems(self._spec, param.expression) if param.type == "token" \
            else None
        kinds: tuple[str, ...] = ()
        components: tuple[Any, ...] = ()
        parts = None
        if param.type == "composite":
            kinds = tuple(self._spec.search_param_by_url(url).type for url, _ in param.components)
            expressions = [expression for _, expression in param.components]
            parts = compile_composite(self._spec, resource_type, param.expression,
                                      expressions) if self._fast else None
            if parts is None:
                components = tuple(self._compile(expression) for expression in expressions)
        expression = None
        if parts is None:
            expression = (self._fast and compile_path(self._spec, resource_type,
                                                      param.expression)) or None
        engine = parts is None and expression is None
        if engine:
            expression = self._compile(param.expression)
        return _Param(code, param.type, _EXTRACT[param.type], expression, engine, implied,
                      kinds, components, parts, _needs(expression, parts))

    def _select(self, key: tuple[str, tuple[str, ...]]) -> tuple[_Param, ...]:
        """The parameters that can select anything in a resource of this type with these
        top-level keys."""
        if len(self._selections) >= _KEY_SETS:
            self._selections.clear()
        found = self._selections[key] = _selected(self._plan(key[0]), key[1])
        return found

    def __call__(self, resource: dict[str, Any]) -> IndexEntries:
        resource_type = resource["resourceType"]
        key = (resource_type, tuple(resource))
        params = self._selections.get(key)
        if params is None:
            params = self._select(key)
        rows = _Rows(resource)
        firsts = rows.firsts
        made: set[str] = set()
        for param in params:
            try:
                if param.parts is not None:
                    if not _fast_composites(param, rows):
                        continue
                else:
                    if param.engine:
                        values = [_plain(v) for v in param.expression.evaluate(resource)]
                    else:
                        values = param.expression.select(resource, firsts)
                    if not values or not param.extract(param, values, rows):
                        continue
            except Exception:  # an engine gap must not block a valid write; make it visible
                log.warning("index %s.%s failed on %s/%s", resource_type, param.code,
                            resource_type, resource.get("id"), exc_info=True)
                continue
            made.add(param.code)
        if self._full_text:
            for code, found_words in (("_text", text_words(resource)),
                                      ("_content", content_words(resource))):
                if found_words:
                    rows.strings += [(code, word, word) for word in found_words]
                    made.add(code)
        shared = self._shared
        return IndexEntries(
            tokens=_typed(rows.tokens, TokenEntry, shared[TokenEntry]),
            strings=_typed(rows.strings, StringEntry, shared[StringEntry]),
            references=_typed(rows.references, ReferenceEntry, shared[ReferenceEntry]),
            dates=_typed(rows.dates, DateEntry, shared[DateEntry]),
            numbers=_typed(rows.numbers, NumberEntry, shared[NumberEntry]),
            quantities=_typed(rows.quantities, QuantityEntry, shared[QuantityEntry]),
            uris=_typed(rows.uris, UriEntry, shared[UriEntry]),
            params=frozenset(made),
            composites=_typed(rows.composites, CompositeEntry, shared[CompositeEntry],
                              slice(-1)),  # not the flag: False == 0.0
        )


def build_indexer(spec: Any, *, full_text: bool = True, fast_paths: bool = True) -> Indexer:
    """The indexer for the R4 spec, using MedArchive's FHIRPath engine."""
    from medarchive import fhirpath
    return Indexer(spec, fhirpath.compile, full_text=full_text, fast_paths=fast_paths)
