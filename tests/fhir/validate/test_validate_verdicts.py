"""Remembered verdicts of primitive values give what the checks give, every time.

Validation remembers the verdict of short texts (``primitives.verdict``); a value seen before
must still be reported at its new location, and values of other JSON types that compare equal
(``1`` and ``True``, ``"true"`` and ``true``) must not share a verdict.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from medarchive.fhir.spec import Spec
from medarchive.fhir.validate import validate_resource
from medarchive.fhir.validate.primitives import (
    CHECKERS,
    SHORT_TEXT,
    STRING_TYPES,
    string_warning,
    verdict,
)

_ANY = st.one_of(st.text(max_size=12), st.booleans(), st.integers(), st.floats(),
                 st.sampled_from(["2020-02-30", "2024-02-29", " ", "a\x01", "ok code", "x" * 300]))


@given(st.sampled_from(sorted(CHECKERS)), _ANY)
def test_verdict_is_the_check_then_the_string_rules(type_code: str, value: Any) -> None:
    check, rules = CHECKERS[type_code], type_code in STRING_TYPES
    problem = check(value)
    expected = (problem, None) if problem else (
        None, string_warning(value) if rules else None)
    assert verdict(check, rules, value) == expected
    assert verdict(check, rules, value) == expected  # remembered, when short text


def test_equal_values_of_other_types_do_not_share_a_verdict() -> None:
    check = CHECKERS["boolean"]
    assert verdict(check, False, True) == (None, None)
    assert verdict(check, False, 1)[0] is not None
    assert verdict(check, False, "true")[0] is not None
    # long texts are checked, not remembered
    assert verdict(CHECKERS["code"], False, "x" * (SHORT_TEXT + 1)) == (None, None)


def test_a_value_seen_before_is_reported_where_it_is_again(spec: Spec) -> None:
    for where in ("Patient.gender", "Patient.birthDate"):
        patient = {"resourceType": "Patient", where.split(".")[1]: "2020-02-30"}
        issues = [issue for issue in validate_resource(patient, spec) if issue.code in (
            "value", "code-invalid")]
        assert [issue.expression for issue in issues] == [(where,)]
    name = {"resourceType": "Patient", "name": [{"family": "a\x01"}, {"family": "a\x01"}]}
    warnings = [issue.expression for issue in validate_resource(name, spec)
                if issue.severity == "warning"]
    assert warnings == [("Patient.name[0].family",), ("Patient.name[1].family",)]
