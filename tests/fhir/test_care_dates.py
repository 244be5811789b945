"""The care-date table of ``$everything`` start/end names real R4 date parameters of Patient
compartment types, and its clause is the range overlap on each of them."""

from __future__ import annotations

from typing import Any

from medarchive.fhir.care_dates import CARE_DATES, care_date_clause
from medarchive.fhir.search.query import AnyOf, Predicate, RangeValue


def test_every_care_date_is_a_date_parameter_of_a_compartment_type(spec: Any) -> None:
    members = {t for t in spec.compartment_types("Patient")
               if spec.compartment_params("Patient", t)}
    for rtype, params in CARE_DATES.items():
        assert rtype in members, rtype
        known = spec.search_params(rtype)
        for param in params:
            assert param in known and known[param].type == "date", (rtype, param)


def test_clause_is_an_overlap_on_each_parameter() -> None:
    assert care_date_clause("Observation", 1, 2) == Predicate(
        "date", "date", (RangeValue("ap", 1, 2),))
    condition = care_date_clause("Condition", 1, 2)
    assert isinstance(condition, AnyOf)
    assert [p.param for p in condition.clauses if isinstance(p, Predicate)] == [
        "onset-date", "recorded-date"]
    assert care_date_clause("Practitioner", 1, 2) is None
    assert care_date_clause("Patient", 1, 2) is None
