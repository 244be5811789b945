"""The pure-Python reference evaluator: row semantics the SQL engines must reproduce."""

from __future__ import annotations

from typing import Any

import pytest

from medarchive.analytics import ViewError, parse_view
from medarchive.analytics.evaluate import REPEAT_DEPTH, evaluate_view

PATIENT = {"resourceType": "Patient", "id": "p1", "active": True,
           "name": [{"family": "A", "given": ["x", "y"]}, {"family": "B"}],
           "birthDate": "1970-06-01"}


def rows(view: dict[str, Any], *resources: dict[str, Any]) -> list[dict[str, Any]]:
    return list(evaluate_view(parse_view({"resource": "Patient", **view}), resources))


def test_columns_come_in_declaration_order_and_skip_other_types() -> None:
    out = rows({"select": [{"column": [{"name": "b", "path": "birthDate"},
                                       {"name": "a", "path": "id"}]}]},
               PATIENT, {"resourceType": "Observation", "id": "o1"})
    assert out == [{"b": "1970-06-01", "a": "p1"}]
    assert list(out[0]) == ["b", "a"]


def test_for_each_gives_a_row_per_item_with_row_index() -> None:
    out = rows({"select": [{"column": [{"name": "id", "path": "id"}]},
                           {"forEach": "name", "column": [
                               {"name": "i", "path": "%rowIndex", "type": "integer"},
                               {"name": "family", "path": "family"},
                               {"name": "pid", "path": "%resource.id"}]}]}, PATIENT)
    assert out == [{"id": "p1", "i": 0, "family": "A", "pid": "p1"},
                   {"id": "p1", "i": 1, "family": "B", "pid": "p1"}]


def test_for_each_or_null_keeps_literals_on_the_empty_focus() -> None:
    out = rows({"select": [{"forEachOrNull": "telecom", "column": [
        {"name": "tag", "path": "'none'"}, {"name": "v", "path": "value"},
        {"name": "i", "path": "%rowIndex"}]}]}, PATIENT)
    assert out == [{"tag": "none", "v": None, "i": 0}]


def test_nested_for_each_under_an_empty_for_each_or_null_gives_no_rows() -> None:
    out = rows({"select": [{"forEachOrNull": "telecom",
                            "select": [{"forEach": "value", "column": [
                                {"name": "v", "path": "$this"}]}]}]}, PATIENT)
    assert out == []


def test_collection_column_and_single_value_rule() -> None:
    out = rows({"select": [{"column": [{"name": "g", "path": "name.given",
                                        "collection": True}]}]}, PATIENT)
    assert out == [{"g": ["x", "y"]}]
    with pytest.raises(ViewError, match="not a collection"):
        rows({"select": [{"column": [{"name": "g", "path": "name.given"}]}]}, PATIENT)


def test_where_must_be_boolean() -> None:
    assert rows({"select": [{"column": [{"name": "id", "path": "id"}]}],
                 "where": [{"path": "active"}]}, PATIENT) == [{"id": "p1"}]
    with pytest.raises(ViewError, match="boolean"):
        rows({"select": [{"column": [{"name": "id", "path": "id"}]}],
              "where": [{"path": "name.family.first()"}]}, PATIENT)


def test_declared_types_convert_values() -> None:
    obs = {"resourceType": "Patient", "id": "p", "multipleBirthInteger": 2}
    out = rows({"select": [{"column": [
        {"name": "n", "path": "multipleBirth.ofType(integer)", "type": "decimal"},
        {"name": "s", "path": "multipleBirth.ofType(integer)", "type": "string"},
        {"name": "q", "path": "1.5 * 2"}]}]}, obs)
    assert out == [{"n": 2.0, "s": "2", "q": 3.0}]
    assert isinstance(out[0]["n"], float) and isinstance(out[0]["q"], float)


def _nested(depth: int) -> dict[str, Any]:
    item: dict[str, Any] = {"linkId": str(depth)}
    for level in range(depth - 1, 0, -1):
        item = {"linkId": str(level), "item": [item]}
    return {"resourceType": "QuestionnaireResponse", "id": "q", "status": "completed",
            "item": [item]}


def test_repeat_is_depth_first_and_bounded() -> None:
    view = {"resource": "QuestionnaireResponse",
            "select": [{"repeat": ["item"], "column": [
                {"name": "link", "path": "linkId"}, {"name": "i", "path": "%rowIndex"}]}]}
    out = list(evaluate_view(parse_view(view), [_nested(REPEAT_DEPTH)]))
    assert [r["link"] for r in out] == [str(n) for n in range(1, REPEAT_DEPTH + 1)]
    assert [r["i"] for r in out] == list(range(REPEAT_DEPTH))
    with pytest.raises(ViewError, match="deeper"):
        list(evaluate_view(parse_view(view), [_nested(REPEAT_DEPTH + 1)]))


def test_fhirpath_failure_becomes_a_view_error() -> None:
    with pytest.raises(ViewError, match="column x"):
        rows({"select": [{"column": [{"name": "x", "path": "name.family.substring('a')"}]}]},
             PATIENT)
