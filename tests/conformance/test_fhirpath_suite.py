"""The official FHIRPath R4 test suite (fhir-test-cases ``r4/fhirpath/tests-fhir-r4.xml``).

Every ``<test>`` becomes one parametrised case: the expression is evaluated against the JSON
form of its input file and the result compared with the ``<output>`` elements in order (type
and value). ``invalid="syntax"`` must fail in ``compile()``; ``invalid="execution"`` must
compile and then fail when evaluated; ``invalid="semantic"`` may fail at either step (this
engine checks names and types while evaluating, when the context type is known).
``mode="strict"`` tests run with ``strict=True``. Known failures are listed in ``KNOWN_FAILURES``
with the reason and marked xfail(strict=True), so fixing one makes the suite say so.

The data is read in place from ``<repo>/../shared/conformance/fhirpath``.
"""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from medarchive.fhirpath import Date, DateTime, FhirPathError, Quantity, Time, compile
from medarchive.fhirpath.model import TypeModel, default_model
from medarchive.fhirpath.nodes import Node, system_value
from medarchive.fhirpath.values import format_decimal

SUITE = Path(__file__).resolve().parents[2] / ".." / "shared" / "conformance" / "fhirpath"
XML = SUITE / "tests-fhir-r4.xml"
# A fixed clock makes now()/today() deterministic.
NOW = datetime(2026, 3, 15, 10, 30, 15, 250000, tzinfo=timezone(timedelta(hours=10)))

# test id -> why it fails. Each is an xfail(strict=True): fixing it turns the run red
# until the entry is removed.
KNOWN_FAILURES: dict[str, str] = {}


def _load_cases() -> list[Any]:
    if not XML.is_file():
        return [pytest.param(None, id="suite-missing")]
    root = ET.parse(XML).getroot()
    cases = []
    seen: Counter[str] = Counter()
    for group in root.iter("group"):
        for test in group.iter("test"):
            name = test.get("name", "unnamed")
            seen[name] += 1
            test_id = name if seen[name] == 1 else f"{name}#{seen[name]}"
            marks = []
            if test_id in KNOWN_FAILURES:
                marks.append(pytest.mark.xfail(reason=KNOWN_FAILURES[test_id], strict=True))
            cases.append(pytest.param((group.get("name"), test), id=test_id, marks=marks))
    return cases


CASES = _load_cases()


def _input(name: str | None) -> Any:
    if not name:
        return None
    path = SUITE / "input-json" / (name.rsplit(".", 1)[0] + ".json")
    return json.loads(path.read_text(encoding="utf-8"))


_INPUTS: dict[str | None, Any] = {}


def _cached_input(name: str | None) -> Any:
    if name not in _INPUTS:
        _INPUTS[name] = _input(name)
    return _INPUTS[name]


_SYSTEM_NAMES = {bool: "boolean", int: "integer", Decimal: "decimal", str: "string",
                 Date: "date", DateTime: "dateTime", Time: "time", Quantity: "Quantity"}


def describe(item: Any) -> tuple[str | None, str]:
    """(FHIR/System type as the suite names it, value text as the suite writes it)."""
    fhir_type = item.type if isinstance(item, Node) else None
    value = system_value(item)
    if isinstance(value, Node):
        return fhir_type, json.dumps(value.value, default=str)
    kind = fhir_type or _SYSTEM_NAMES.get(type(value))
    if isinstance(value, bool):
        return kind, "true" if value else "false"
    if isinstance(value, Decimal):
        return kind, format_decimal(value)
    if isinstance(value, (Date, DateTime)):
        return kind, "@" + value.iso()
    if isinstance(value, Time):
        return kind, "@T" + value.iso()
    return kind, str(value)


def _model() -> TypeModel:
    return default_model()


def test_fhirpath_suite_is_present() -> None:
    if not XML.is_file():
        message = f"FHIRPath suite not found at {XML}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    assert len(CASES) == 935


@pytest.mark.parametrize("case", CASES)
def test_fhirpath_case(case: Any) -> None:
    if case is None:
        message = f"FHIRPath suite not found at {XML}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    _group, test = case
    expr_el = test.find("expression")
    assert expr_el is not None
    text = expr_el.text or ""
    invalid = expr_el.get("invalid")
    strict = "strict" in (test.get("mode"), expr_el.get("mode"))
    resource = _cached_input(test.get("inputfile"))
    model = _model()

    if invalid == "syntax":
        with pytest.raises(FhirPathError):
            compile.__wrapped__(text)
        return
    if invalid == "execution":
        expression = compile.__wrapped__(text)
        with pytest.raises(FhirPathError):
            expression.evaluate_items(resource, now=NOW, strict=strict, model=model)
        return
    if invalid is not None:  # semantic: at compile time or while evaluating
        with pytest.raises(FhirPathError):
            compile.__wrapped__(text).evaluate_items(resource, now=NOW, strict=strict,
                                                     model=model)
        return

    result = compile(text).evaluate_items(resource, now=NOW, strict=strict, model=model)
    if test.get("predicate") == "true":
        result = [bool(result)]
    actual = [describe(item) for item in result]
    expected = [(out.get("type"), out.text or "") for out in test.findall("output")]
    if test.get("ordered") == "false":
        actual.sort(key=lambda p: p[1])
        expected.sort(key=lambda p: p[1])
    assert [value for _, value in actual] == [value for _, value in expected], actual
    for (got_type, _), (want_type, _) in zip(actual, expected, strict=True):
        if want_type is not None:
            assert got_type == want_type, f"type {got_type} != {want_type}"
