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
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from medarchive.fhir.search.entries import (
    CompositeEntry,
    DateEntry,
    IndexEntries,
    StringEntry,
)
from medarchive.fhir.search.extract import (
    date_ranges,
    number_rows,
    quantity_rows,
    reference_rows,
    string_rows,
    strings,
    token_rows,
    uri_rows,
)
from medarchive.fhir.search.normalize import normalize_string
from medarchive.fhir.search.paths import compile_composite, compile_path
from medarchive.fhir.search.text import content_words, text_words
from medarchive.fhir.search.units import UCUM, number_range

log = logging.getLogger(__name__)

__all__ = ["INDEXED_TYPES", "SEARCHABLE_TYPES", "Indexer", "build_indexer", "number_range"]

# the simple parameter types; SEARCHABLE_TYPES adds composites (made of simple components)
INDEXED_TYPES = frozenset({"token", "string", "reference", "date", "number", "quantity", "uri"})
SEARCHABLE_TYPES = INDEXED_TYPES | {"composite"}
_ROW_KINDS = ("tokens", "strings", "references", "dates", "numbers", "quantities", "uris",
              "composites")
_MAX_COMBINATIONS = 256
_SIMPLE_PATH = re.compile(r"^\(?([A-Z][A-Za-z]+(?:\.[a-z][A-Za-z]*)+)\)?$")
Slot = tuple[str | None, str | None, float | None, float | None]


@dataclass(frozen=True, slots=True)
class _Plan:
    code: str
    kind: str
    expression: Any
    implied: Mapping[str, str] | None = None  # code -> system from a required binding
    components: tuple[tuple[str, Any], ...] = ()
    # composites in fast form: (element expression, its components) per union branch
    parts: tuple[tuple[Any, tuple[Any, ...]], ...] | None = None


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
        self._plans: dict[str, list[_Plan]] = {}

    def _plan(self, resource_type: str) -> list[_Plan]:
        plan = self._plans.get(resource_type)
        if plan is None:
            plan = []
            for code, param in sorted(self._spec.search_params(resource_type).items()):
                if param.type not in SEARCHABLE_TYPES or not param.expression or code in (
                        "_id", "_lastUpdated"):
                    continue
                implied = implied_systems(self._spec, param.expression) \
                    if param.type == "token" else None
                components: list[tuple[str, Any]] = []
                parts = None
                if param.type == "composite":
                    for url, expression in param.components:
                        part = self._spec.search_param_by_url(url)
                        components.append((part.type, self._compile(expression)))
                    parts = compile_composite(
                        self._spec, resource_type, param.expression,
                        [expression for _, expression in param.components]) if self._fast else None
                expression = None if parts is not None else (self._fast and compile_path(
                    self._spec, resource_type, param.expression)) or self._compile(
                    param.expression)
                plan.append(_Plan(code, param.type, expression, implied, tuple(components),
                                  parts))
            self._plans[resource_type] = plan
        return plan

    def __call__(self, resource: dict[str, Any]) -> IndexEntries:
        rows: dict[str, list[Any]] = {name: [] for name in _ROW_KINDS}
        params: set[str] = set()
        for plan in self._plan(resource["resourceType"]):
            try:
                if plan.parts is not None:
                    composites = self._fast_composites(plan, resource)
                    rows["composites"] += composites
                    made = bool(composites)
                else:
                    found = [_plain(v) for v in plan.expression.evaluate(resource)]
                    made = bool(found) and self._extract(plan, found, resource, rows)
            except Exception:  # an engine gap must not block a valid write; make it visible
                log.warning("index %s.%s failed on %s/%s", resource["resourceType"], plan.code,
                            resource["resourceType"], resource.get("id"), exc_info=True)
                continue
            if made:
                params.add(plan.code)
        if self._full_text:
            for code, found_words in (("_text", text_words(resource)),
                                      ("_content", content_words(resource))):
                rows["strings"] += [StringEntry(code, word, word) for word in found_words]
                if found_words:
                    params.add(code)
        return IndexEntries(
            tokens=tuple(dict.fromkeys(rows["tokens"])),
            strings=tuple(dict.fromkeys(rows["strings"])),
            references=tuple(dict.fromkeys(rows["references"])),
            dates=tuple(dict.fromkeys(rows["dates"])),
            numbers=tuple(dict.fromkeys(rows["numbers"])),
            quantities=tuple(dict.fromkeys(rows["quantities"])),
            uris=tuple(dict.fromkeys(rows["uris"])),
            params=frozenset(params),
            composites=tuple(dict.fromkeys(rows["composites"])),
        )

    def _extract(self, plan: _Plan, values: list[Any], resource: dict[str, Any],
                 rows: dict[str, list[Any]]) -> bool:
        """Append the rows of one parameter's values; say whether any row of it was made."""
        code, kind = plan.code, plan.kind
        made = False
        for value in values:
            if kind == "token":
                tokens, texts = token_rows(code, value, plan.implied)
                rows["tokens"] += tokens
                rows["strings"] += texts
                made = made or any(t.param == code for t in tokens)
            elif kind == "string":
                found = string_rows(code, value)
                rows["strings"] += found
                made = made or bool(found)
            elif kind == "reference":
                refs, identifiers = reference_rows(code, value)
                rows["references"] += refs
                rows["tokens"] += identifiers
                made = made or bool(refs or identifiers)
            elif kind == "date":
                dates = [DateEntry(code, low, high) for low, high in date_ranges(value)]
                rows["dates"] += dates
                made = made or bool(dates)
            elif kind == "number":
                numbers = number_rows(code, value)
                rows["numbers"] += numbers
                made = made or bool(numbers)
            elif kind == "quantity":
                quantities = quantity_rows(code, value)
                rows["quantities"] += quantities
                made = made or bool(quantities)
            elif kind == "uri":
                uris = uri_rows(code, value)
                rows["uris"] += uris
                made = made or bool(uris)
            elif kind == "composite":
                composites = self._composites(plan, value, resource)
                rows["composites"] += composites
                made = made or bool(composites)
        return made

    def _fast_composites(self, plan: _Plan, resource: dict[str, Any]) -> list[CompositeEntry]:
        """Composite rows through the fast path forms of ``plan.parts``."""
        kinds = [kind for kind, _ in plan.components]
        rows: list[CompositeEntry] = []
        for element_expression, components in plan.parts or ():
            for element in element_expression.evaluate(resource):
                if isinstance(element, dict):
                    rows += _combine(plan, [(kind, component.evaluate(element)) for kind,
                                            component in zip(kinds, components, strict=True)])
        return rows

    def _composites(self, plan: _Plan, element: Any, resource: dict[str, Any]
                    ) -> list[CompositeEntry]:
        if not isinstance(element, dict):
            return []
        return _combine(plan, [(kind, [_plain(v) for v in expression.evaluate(
            element, {"resource": resource})]) for kind, expression in plan.components])


def _combine(plan: _Plan, found: list[tuple[str, list[Any]]]) -> list[CompositeEntry]:
    """The rows of one element's component values: every combination, plain and canonical."""
    slots: list[list[tuple[Slot, Slot | None]]] = []
    for kind, values in found:
        part = component_slots(kind, values)
        if not part:
            return []
        slots.append(part)
    rows: list[CompositeEntry] = []
    has_quantity = any(kind == "quantity" for kind, _ in plan.components)
    for combination in itertools.islice(itertools.product(*slots), _MAX_COMBINATIONS):
        rows.append(_composite(plan.code, [plain for plain, _ in combination], False))
        canonical = [canon for _, canon in combination]
        if has_quantity and all(c is not None for c in canonical):
            rows.append(_composite(plan.code, canonical, True))  # type: ignore[arg-type]
    return rows


def _composite(code: str, slots: list[Slot], canonical: bool) -> CompositeEntry:
    empty: Slot = (None, None, None, None)
    first, second, third = (*slots, empty, empty)[:3]
    return CompositeEntry(code, *first, *second, *third, canonical=canonical)


def component_slots(kind: str, values: list[Any]) -> list[tuple[Slot, Slot | None]]:
    """The (plain, canonical) slots one composite component takes from its values.

    Non-quantity components are the same in both forms; a quantity has a canonical slot only
    when its unit converts (see ``CompositeEntry``).
    """
    slots: list[tuple[Slot, Slot | None]] = []
    for value in values:
        if kind == "token":
            for token in token_rows("", value)[0]:
                slot: Slot = (token.system, token.code, None, None)
                slots.append((slot, slot))
        elif kind == "reference":
            for ref in reference_rows("", value)[0]:
                slot = (ref.target_type, ref.target_id if ref.url is None else ref.url,
                        None, None)
                slots.append((slot, slot))
        elif kind in ("string", "uri"):
            for text in (strings(value) if kind == "string" else
                         ([value] if isinstance(value, str) else [])):
                slot = (None, normalize_string(text) if kind == "string" else text, None, None)
                slots.append((slot, slot))
        elif kind == "date":
            for low, high in date_ranges(value):
                slot = (None, None, float(low), float(high))
                slots.append((slot, slot))
        elif kind == "number":
            for number in number_rows("", value):
                slot = (None, None, number.low, number.high)
                slots.append((slot, slot))
        elif kind == "quantity":
            for q in quantity_rows("", value):
                canonical: Slot | None = None
                if q.canonical_code is not None:
                    canonical = (UCUM, q.canonical_code, q.canonical_low, q.canonical_high)
                slots.append(((q.system, q.code, q.low, q.high), canonical))
    return list(dict.fromkeys(slots))


def build_indexer(spec: Any, *, full_text: bool = True, fast_paths: bool = True) -> Indexer:
    """The indexer for the R4 spec, using MedArchive's FHIRPath engine."""
    from medarchive import fhirpath
    return Indexer(spec, fhirpath.compile, full_text=full_text, fast_paths=fast_paths)
