"""Parsing single search values, chains and includes (R4 Search §3.1.1.5), with property tests."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medarchive.errors import BadRequest, FhirError
from medarchive.fhir.search import values
from medarchive.fhir.search.include import parse_include, parse_includes
from medarchive.fhir.search.parse import parse_clause, parse_search
from medarchive.fhir.search.query import (
    AnyOf,
    Chain,
    CodeSetValue,
    CompositeValue,
    Has,
    Include,
    OfTypeValue,
    Predicate,
    QuantityValue,
    RangeValue,
    ReferenceValue,
    StringValue,
    TextValue,
    TokenValue,
)
from medarchive.fhir.search.units import canonical_range, decimal_range
from medarchive.fhir.spec import load_spec

SPEC = load_spec()
UCUM = "http://unitsofmeasure.org"


def test_split_on_unescapes_and_keeps_empty_parts() -> None:
    assert values.split_on(r"a\|b|c|", "|") == ["a|b", "c", ""]
    assert values.split_on(r"8480-6$gt100\$x", "$") == ["8480-6", "gt100$x"]


def test_quantity_forms() -> None:
    assert values.quantity("gt5.4") == QuantityValue("gt", 5.4, 5.4, None, None)
    assert values.quantity("5.4||mg") == QuantityValue("eq", 5.35, 5.45, None, "mg")
    converted = values.quantity(f"le1|{UCUM}|kg")
    assert converted == QuantityValue("le", 1000.0, 1000.0, UCUM, "g", True)
    assert values.quantity(f"1|{UCUM}|[nonsense]").canonical is False
    with pytest.raises(BadRequest):
        values.quantity("5|mg")


def test_composite_parts_are_parsed_by_component_type() -> None:
    composite = values.composite(("token", "quantity"), f"http://loinc.org|8480-6$gt100|{UCUM}|"
                                                        "mm[Hg]")
    token, quantity = composite.parts
    assert token == TokenValue("http://loinc.org", "8480-6")
    assert isinstance(quantity, QuantityValue) and quantity.canonical and quantity.prefix == "gt"
    assert values.composite(("token", "string"), r"x$a\$b") == CompositeValue(
        (TokenValue(None, "x"), StringValue("a$b")))
    with pytest.raises(BadRequest):
        values.composite(("token", "quantity"), "8480-6")


def test_modifier_values() -> None:
    text = parse_clause(SPEC, "Observation", "code:text", "Heart  RATE")
    assert text == Predicate("code", "token", (StringValue("heart rate"),), "text")
    of_type = parse_clause(SPEC, "Patient", "identifier:of-type", "urn:t|MR|123")
    assert isinstance(of_type, Predicate) and of_type.values == (OfTypeValue("urn:t", "MR",
                                                                             "123"),)
    codes = parse_clause(SPEC, "Patient", "gender:in",
                         "http://hl7.org/fhir/ValueSet/administrative-gender")
    assert isinstance(codes, Predicate) and isinstance(codes.values[0], CodeSetValue)
    assert ("http://hl7.org/fhir/administrative-gender", "male") in codes.values[0].codes
    content = parse_clause(SPEC, "Patient", "_content", "Heart failure,gout")
    assert isinstance(content, Predicate) and content.values == (
        TextValue(("heart", "failure")), TextValue(("gout",)))
    with pytest.raises(BadRequest):
        parse_clause(SPEC, "Patient", "identifier:of-type", "MR|123")
    with pytest.raises(BadRequest):
        parse_clause(SPEC, "Patient", "birthdate:exact", "2000")


def test_chains_and_reverse_chains() -> None:
    chain = parse_clause(SPEC, "Observation", "subject:Patient.organization.name", "acme")
    assert chain == Chain("subject", "Patient", Chain("organization", "Organization",
                                                      Predicate("name", "string",
                                                                (StringValue("acme"),))))
    untyped = parse_clause(SPEC, "Observation", "subject.name", "x")
    assert isinstance(untyped, AnyOf)
    assert {c.target_type for c in untyped.clauses if isinstance(c, Chain)} == \
        {"Patient", "Location"}  # the targets of subject that have a name parameter
    has = parse_clause(SPEC, "Patient", "_has:Observation:patient:code", "1234")
    assert has == Has("Observation", "patient", Predicate("code", "token",
                                                          (TokenValue(None, "1234"),)))
    assert parse_clause(SPEC, "Observation", "subject.nonsense", "x") is None
    assert parse_clause(SPEC, "Patient", "_list", "42") == Has(
        "List", "item", Predicate("_id", "id", (TokenValue(None, "42"),)))
    with pytest.raises(BadRequest):
        parse_clause(SPEC, "Patient", "_has:Observation", "x")
    with pytest.raises(BadRequest):
        parse_clause(SPEC, "Observation", "subject:Patient.organization" + ".partof" * 4 +
                     ".name", "x")


def test_includes() -> None:
    assert parse_include(SPEC, "_include", "Observation:subject:Patient") == \
        Include("Observation", "subject", "Patient")
    assert parse_include(SPEC, "_revinclude:iterate", "Provenance:target") == \
        Include("Provenance", "target", None, reverse=True, iterate=True)
    assert parse_include(SPEC, "_include", "Observation:*") == Include("Observation", None)
    found = parse_includes(SPEC, [("_include", "Observation:subject"), ("name", "x"),
                                  ("_include", "Observation:subject")])
    assert found == (Include("Observation", "subject"),)
    for bad in ("Observation", "Observation:status", "Nonsense:subject",
                "Observation:subject:Nonsense", "Observation:subject:Organization"):
        with pytest.raises(BadRequest):
            parse_include(SPEC, "_include", bad)


def test_decimal_ranges_follow_significant_digits() -> None:
    assert decimal_range("100") == (Decimal(100), Decimal("99.5"), Decimal("100.5"))
    assert decimal_range("1e2") == (Decimal(100), Decimal(50), Decimal(150))
    assert canonical_range(Decimal(1), Decimal(2), "kg") == ("g", 1000.0, 2000.0)
    assert canonical_range(Decimal(1), Decimal(1), "{score}") == ("1", 1.0, 1.0)
    assert canonical_range(Decimal(1), Decimal(1), "[nonsense]") is None


@given(st.text(max_size=40))
def test_any_token_or_quantity_text_parses_or_is_a_400(text: str) -> None:
    for parse in (values.token, values.quantity, values.number, values.date):
        try:
            value = parse(text)
        except FhirError as exc:
            assert exc.status == 400
            continue
        if isinstance(value, RangeValue | QuantityValue):
            assert value.low <= value.high


@given(st.sampled_from(["code-value-quantity", "component-code-value-quantity",
                        "subject.name", "subject:Patient.gender", "_has:Observation:subject:code",
                        "code:text", "code:in", "value-quantity", "date", "_content"]),
       st.text(alphabet="ab|$,\\:5.-gtle", max_size=20))
def test_any_observation_parameter_parses_or_is_a_clean_error(name: str, text: str) -> None:
    try:
        parsed = parse_search(SPEC, "Observation", [(name, text)])
    except FhirError as exc:
        assert 400 <= exc.status < 500 and exc.outcome["issue"][0]["diagnostics"]
        return
    assert len(parsed.query.predicates) + len(parsed.unknown) == 1
    for clause in parsed.query.predicates:
        assert isinstance(clause, Predicate | Chain | Has | AnyOf)
    assert ReferenceValue  # the module's value types stay importable together


@given(st.sampled_from(["_include", "_revinclude", "_include:iterate", "_include:bogus"]),
       st.text(alphabet="ObservationPatient:subject*x", max_size=30))
def test_any_include_parses_or_is_a_400(name: str, text: str) -> None:
    try:
        include = parse_include(SPEC, name, text)
    except FhirError as exc:
        assert exc.status == 400
        return
    assert SPEC.is_resource_type(include.source_type)
    assert include.reverse == name.startswith("_revinclude")


@given(st.lists(st.text(alphabet="ab,|$\\", max_size=6), max_size=4),
       st.sampled_from([",", "|", "$"]))
def test_split_on_inverts_escaping(parts: list[str], separator: str) -> None:
    """Joining escaped parts with the separator and splitting again gives the parts back,
    with or without backslashes in the text (the unescaped fast path included)."""
    escaped = [p.replace("\\", "\\\\").replace(",", "\\,").replace("|", "\\|")
               .replace("$", "\\$") for p in parts]
    text = separator.join(escaped)
    assert values.split_on(text, separator) == (parts if parts else [""])
    assert len(values.split_values(text)) == (len(parts) if separator == "," and parts else 1)
