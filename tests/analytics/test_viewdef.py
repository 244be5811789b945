"""The ViewDefinition parser: valid views become the model, invalid ones a ViewError listing
every problem with its location; random and mutated JSON never raises anything else."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medarchive.analytics import ViewDefinition, ViewError, library, parse_view
from medarchive.fhirpath import Date

SUITE = Path(__file__).resolve().parents[2] / ".." / "shared" / "conformance" / "sql-on-fhir"


def _view(**extra: Any) -> dict[str, Any]:
    view: dict[str, Any] = {"resourceType": "ViewDefinition", "resource": "Patient",
                            "select": [{"column": [{"name": "id", "path": "id"}]}]}
    view.update(extra)
    return view


def _problems(data: Any) -> list[str]:
    with pytest.raises(ViewError) as caught:
        parse_view(data)
    return [issue.diagnostics for issue in caught.value.issues]


def test_parses_a_view_into_the_model() -> None:
    view = parse_view(_view(
        name="patients", status="active",
        constant=[{"name": "use", "valueCode": "official"},
                  {"name": "born", "valueDate": "1970-01-01"},
                  {"name": "limit", "valueDecimal": 1.5}],
        where=[{"path": "active = true"}],
        select=[{"column": [{"name": "id", "path": "id", "type": "id"}]},
                {"forEach": "name.where(use = %use)",
                 "column": [{"name": "family", "path": "family", "collection": False}],
                 "unionAll": [{"column": [{"name": "x", "path": "'a'"}]},
                              {"column": [{"name": "x", "path": "'b'"}]}]}]))
    assert isinstance(view, ViewDefinition)
    assert view.resource == "Patient" and view.name == "patients"
    assert view.column_names == ("id", "family", "x")
    assert [c.name for c in view.columns] == ["id", "family", "x"]
    assert view.root.selects[1].for_each is not None
    assert view.root.selects[1].for_each.source == "name.where(use = %use)"
    assert view.variables() == {"use": "official", "born": Date.parse("1970-01-01"),
                                "limit": Decimal("1.5")}
    assert [w.source for w in view.where] == ["active = true"]


def test_model_is_immutable() -> None:
    view = parse_view(_view())
    with pytest.raises(AttributeError):
        view.resource = "Observation"  # type: ignore[misc]


@pytest.mark.parametrize(("data", "fragment"), [
    ({}, "resource: the view must name"),
    (_view(resource=None), "resource: the view must name"),
    (_view(resource="patient"), "is not a FHIR resource type name"),
    (_view(select=[]), "non-empty list of select"),
    (_view(select=[{"forEach": 1}]), "forEach: expected a FHIRPath expression"),
    (_view(select=[{"forEach": "@@"}]), "select[0].forEach: FHIRPath syntax error"),
    (_view(select=[{"column": [{"name": "1x", "path": "id"}]}]), "not a valid column name"),
    (_view(select=[{"column": [{"name": "a", "path": "id"}, {"name": "a", "path": "id"}]}]),
     "'a' is used more than once"),
    (_view(select=[{"column": [{"name": "a", "path": "id", "collection": "yes"}]}]),
     "collection: expected true or false"),
    (_view(select=[{"forEach": "name", "forEachOrNull": "name"}]), "cannot be used together"),
    (_view(select=[{"unionAll": [{"column": [{"name": "a", "path": "id"}]},
                                 {"column": [{"name": "b", "path": "id"}]}]}]),
     "differ from the first branch"),
    (_view(select=[{"unionAll": [{"column": [{"name": "a", "path": "id", "type": "string"}]},
                                 {"column": [{"name": "a", "path": "id",
                                              "type": "integer"}]}]}]),
     "declared string in the first branch and integer here"),
    (_view(select=[{"colum": []}]), "select[0].colum: unknown element"),
    (_view(constant=[{"name": "c"}]), "needs exactly one value[x]"),
    (_view(constant=[{"name": "c", "valueDate": "not a date"}]), "is not a valid date"),
    (_view(constant=[{"name": "c", "valuePositiveInt": 0}]), "is not a valid positiveInt"),
    (_view(select=[{"column": [{"name": "a", "path": "name.where(use = %nope)"}]}]),
     "%nope is not a constant"),
    (_view(where=[{"path": 3}]), "where[0].path: expected a FHIRPath"),
    (_view(select=[{"repeat": []}]), "repeat: expected a non-empty list"),
    ([], "must be a JSON object"),
])
def test_rejects_invalid_views_with_location(data: Any, fragment: str) -> None:
    assert any(fragment in problem for problem in _problems(data)), _problems(data)


def test_collects_every_problem() -> None:
    problems = _problems({"select": [{"column": [{"name": "", "path": ""}]}],
                          "where": [{"path": "("}]})
    assert len(problems) >= 4
    assert any(p.startswith("resource") for p in problems)
    assert any(p.startswith("select[0].column[0].name") for p in problems)
    assert any(p.startswith("select[0].column[0].path") for p in problems)
    assert any(p.startswith("where[0].path") for p in problems)


def test_error_is_a_400_with_an_operation_outcome() -> None:
    with pytest.raises(ViewError) as caught:
        parse_view({"resource": 1})
    assert caught.value.status == 400
    outcome = caught.value.outcome
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == ["resource"]


# -- property tests ----------------------------------------------------------------------

def _seed_views() -> list[dict[str, Any]]:
    views = list(library.views().values())
    for path in sorted((SUITE / "tests").glob("*.json")):
        views.extend(t["view"] for t in json.loads(path.read_text())["tests"])
    return views


SEEDS = _seed_views()
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["resource", "select", "column", "name", "path",
                                       "forEach", "forEachOrNull", "unionAll", "repeat",
                                       "where", "constant", "valueString", "valueInteger",
                                       "collection", "type", "tag"]) | st.text(max_size=6),
                      inner, max_size=5),
    max_leaves=25)
_paths = st.sampled_from(["id", "name.family", "@@", "(", "name.where(", "%x", "1 +", "",
                          "name[0].given", "$this", "value.ofType(Quantity)", "'a' | 'b'",
                          "extension('u').value", "%rowIndex", "getResourceKey()"])


def _locations(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            out.extend(_locations(value, (*prefix, key)))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out.extend(_locations(value, (*prefix, i)))
    return out


@st.composite
def _mutated(draw: st.DrawFn) -> Any:
    view = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 3))):
        locations = _locations(view)
        where = draw(st.sampled_from(locations))
        if not where:
            continue
        parent = view
        for step in where[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "path", "delete"]))
        if action == "delete":
            del parent[where[-1]]
        elif action == "path":
            parent[where[-1]] = draw(_paths)
        else:
            parent[where[-1]] = draw(_json)
    return view


def _parse_or_error(data: Any) -> None:
    try:
        view = parse_view(data)
    except ViewError as exc:
        assert exc.issues and all(issue.diagnostics for issue in exc.issues)
        return
    assert isinstance(view, ViewDefinition)
    assert len(set(view.column_names)) == len(view.column_names)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_json)
def test_random_json_gives_a_model_or_a_view_error(data: Any) -> None:
    _parse_or_error(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_mutated_views_give_a_model_or_a_view_error(data: Any) -> None:
    _parse_or_error(data)


def test_every_seed_view_is_either_valid_or_an_expected_error() -> None:
    ok = sum(1 for view in SEEDS if _valid(view))
    assert ok >= len(library.views())   # the shipped views, at least, are valid


def _valid(view: dict[str, Any]) -> bool:
    try:
        parse_view(view)
    except ViewError:
        return False
    return True
