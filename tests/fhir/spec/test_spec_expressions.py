"""Narrowing multi-type SearchParameter expressions to one resource type."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from medarchive.fhir.spec.expressions import restrict_expression, split_union


def test_split_respects_parentheses_and_strings() -> None:
    assert split_union("A.x | (B.y | C.z).first() | D.w.where(v = 'a|b')") == [
        "A.x", "(B.y | C.z).first()", "D.w.where(v = 'a|b')"]


def test_restrict_keeps_own_branch_with_where() -> None:
    expression = ("AllergyIntolerance.patient | CarePlan.subject.where(resolve() is Patient) | "
                  "Observation.subject.where(resolve() is Patient)")
    assert restrict_expression(expression, "Observation") == (
        "Observation.subject.where(resolve() is Patient)")
    assert restrict_expression(expression, "AllergyIntolerance") == "AllergyIntolerance.patient"
    assert restrict_expression(expression, "Patient") is None


def test_restrict_keeps_parenthesised_branches() -> None:
    expression = ("(ActivityDefinition.useContext.value as Quantity) | "
                  "(ActivityDefinition.useContext.value as Range) | "
                  "(ValueSet.useContext.value as Quantity)")
    assert restrict_expression(expression, "ValueSet") == (
        "(ValueSet.useContext.value as Quantity)")


def test_restrict_narrows_inside_a_group() -> None:
    expression = "(Account.subject | Observation.subject).where(resolve() is Patient)"
    assert restrict_expression(expression, "Observation") == (
        "(Observation.subject).where(resolve() is Patient)")
    assert restrict_expression(expression, "Goal") is None


def test_restrict_keeps_resource_level_and_qualifies_relative_paths() -> None:
    assert restrict_expression("Resource.meta.tag", "Patient") == "Resource.meta.tag"
    assert restrict_expression("name | alias", "InsurancePlan") == (
        "InsurancePlan.name | InsurancePlan.alias")
    assert restrict_expression(None, "Patient") is None


def test_prefix_of_type_name_is_not_a_match() -> None:
    # "Medication" must not keep "MedicationRequest" branches.
    assert restrict_expression("MedicationRequest.code | Medication.code", "Medication") == (
        "Medication.code")


names = st.sampled_from(["Patient", "Observation", "Goal", "Resource"])
paths = st.lists(st.from_regex(r"[a-z][A-Za-z]{0,6}", fullmatch=True), min_size=1, max_size=3)
wheres = st.sampled_from(["", ".where(resolve() is Patient)", ".where(system='a | b')"])
branch = st.builds(lambda t, p, w: f"{t}.{'.'.join(p)}{w}", names, paths, wheres)


@given(st.lists(branch, min_size=1, max_size=6))
def test_split_round_trips_generated_unions(parts: list[str]) -> None:
    assert split_union(" | ".join(parts)) == parts


@given(st.lists(branch, min_size=1, max_size=6), names)
def test_restrict_keeps_exactly_the_matching_branches(parts: list[str], target: str) -> None:
    kept = [p for p in parts if p.split(".")[0] in (target, "Resource")]
    result = restrict_expression(" | ".join(parts), target)
    assert result == (" | ".join(kept) if kept else None)


@given(st.text(max_size=60))
def test_random_text_never_crashes(text: str) -> None:
    split_union(text)
    restrict_expression(text, "Patient")
