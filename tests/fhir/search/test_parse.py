"""Parsing search URLs into SearchQuery values (R4 Search §3.1.1), with property tests."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medarchive.errors import BadRequest, FhirError
from medarchive.fhir.search.parse import parse_search, split_values
from medarchive.fhir.search.query import (
    QuantityValue,
    RangeValue,
    ReferenceValue,
    SortKey,
    StringValue,
    TokenValue,
)


@dataclass(frozen=True)
class Param:
    type: str
    targets: tuple[str, ...] = ()
    components: tuple[tuple[str, str], ...] = ()
    expression: str | None = None  # none: never a union (``fhir.search.unions``)
    url: str = "urn:test"


class FakeSpec:
    """Only what the parser asks of the spec: parameters and resource type names."""

    params = {"Patient": {"identifier": Param("token"), "name": Param("string"),
                          "birthdate": Param("date"), "general-practitioner": Param("reference"),
                          "phonetic": Param("string")},
              "Observation": {"subject": Param("reference"), "value-quantity": Param("quantity"),
                              "code": Param("token"), "code-value-quantity": Param("composite")},
              "RiskAssessment": {"probability": Param("number")}}

    def search_params(self, resource_type: str) -> dict[str, Param]:
        return self.params.get(resource_type, {})

    def is_resource_type(self, name: str) -> bool:
        return name in ("Patient", "Observation", "RiskAssessment", "Group")


SPEC = FakeSpec()


def parse(rtype: str | None, *pairs: tuple[str, str]):  # type: ignore[no-untyped-def]
    return parse_search(SPEC, rtype, list(pairs), default_count=20, max_count=100)


def test_token_forms() -> None:
    [pred] = parse("Patient", ("identifier", "urn:x|1,|2,urn:y|,3")).query.predicates
    assert pred.values == (TokenValue("urn:x", "1"), TokenValue("", "2"),
                           TokenValue("urn:y", None), TokenValue(None, "3"))


def test_escapes() -> None:
    assert split_values(r"a\,b,c") == [r"a\,b", "c"]
    [pred] = parse("Patient", ("identifier", r"urn:x|a\|b\,c")).query.predicates
    assert pred.values == (TokenValue("urn:x", "a|b,c"),)
    [pred] = parse("Patient", ("name", r"O\,Brien")).query.predicates
    assert pred.values == (StringValue("o,brien"),)


def test_string_normalised_and_exact() -> None:
    [pred] = parse("Patient", ("name", "Müller")).query.predicates
    assert pred.values == (StringValue("muller"),)
    [pred] = parse("Patient", ("name:exact", "Müller")).query.predicates
    assert pred.values == (StringValue("Müller"),) and pred.modifier == "exact"


def test_references_and_type_modifier() -> None:
    [pred] = parse("Observation", ("subject", "Patient/1,2")).query.predicates
    assert pred.values == (ReferenceValue("Patient", "1"), ReferenceValue(None, "2"))
    [pred] = parse("Observation", ("subject:Group", "7")).query.predicates
    assert pred.values == (ReferenceValue("Group", "7"),) and pred.modifier is None
    with pytest.raises(BadRequest):
        parse("Observation", ("subject:Nonsense", "7"))


def test_prefixes_and_numbers() -> None:
    [pred] = parse("Patient", ("birthdate", "ge2020-01")).query.predicates
    assert isinstance(pred.values[0], RangeValue) and pred.values[0].prefix == "ge"
    [pred] = parse("RiskAssessment", ("probability", "0.8")).query.predicates
    assert pred.values == (RangeValue("eq", pytest.approx(0.75), pytest.approx(0.85)),)
    [pred] = parse("Observation", ("value-quantity", "lt5.4|http://unitsofmeasure.org|mg")
                   ).query.predicates
    # UCUM units that convert are searched in base units: 5.4 mg is 0.0054 g
    assert pred.values == (QuantityValue("lt", 0.0054, 0.0054, "http://unitsofmeasure.org", "g",
                                         True),)
    [pred] = parse("Observation", ("value-quantity", "5.4||mg")).query.predicates
    assert pred.values == (QuantityValue("eq", pytest.approx(5.35), pytest.approx(5.45), None,
                                         "mg"),)


def test_and_or_count_sort_offset() -> None:
    parsed = parse("Patient", ("name", "a,b"), ("name", "c"), ("_count", "500"),
                   ("_offset", "40"), ("_sort", "-birthdate,_id"), ("_summary", "true"))
    query = parsed.query
    assert len(query.predicates) == 2 and len(query.predicates[0].values) == 2
    assert query.count == 100 and query.offset == 40
    assert query.sort == (SortKey("birthdate", "date", True), SortKey("_id", "_id"))
    assert ("_summary", "true") not in parsed.self_params


def test_unknown_and_unsupported_are_reported() -> None:
    # general-practitioner has no known targets in this fake spec, so its chain is unknown
    parsed = parse("Patient", ("nonsense", "1"), ("general-practitioner.name", "x"),
                   ("name.family", "x"))
    assert parsed.unknown == ("nonsense", "general-practitioner.name", "name.family")


@pytest.mark.parametrize("pair", [("birthdate", "yesterday"), ("_count", "-1"), ("_count", "x"),
                                  ("name:below", "x"), ("identifier", "a|b|c"),
                                  ("name:missing", "maybe"), ("_sort", "nonsense"),
                                  ("name", "")])
def test_malformed_values_are_400(pair: tuple[str, str]) -> None:
    with pytest.raises(BadRequest):
        parse("Patient", pair)


def test_system_search_with_type() -> None:
    assert parse(None, ("_type", "Patient"), ("name", "x")).query.resource_type == "Patient"
    several = parse(None, ("_type", "Patient,Observation"), ("name", "x")).query
    assert several.resource_type is None and several.types == ("Patient", "Observation")
    with pytest.raises(BadRequest):
        parse(None, ("_type", "Patient,Nonsense"))


NAMES = st.sampled_from(["identifier", "name", "birthdate", "general-practitioner", "_id",
                         "_lastUpdated", "_count", "_sort", "_offset", "name:exact",
                         "name:contains", "identifier:not", "birthdate:missing", "bogus"])


@given(st.lists(st.tuples(NAMES, st.text(max_size=30)), max_size=6))
def test_any_input_parses_or_is_a_clean_error(pairs: list[tuple[str, str]]) -> None:
    try:
        parsed = parse("Patient", *pairs)
    except FhirError as exc:
        assert 400 <= exc.status < 600
        assert exc.outcome["issue"][0]["diagnostics"]
        return
    assert 0 <= parsed.query.count <= 100
    for pred in parsed.query.predicates:
        assert pred.values or pred.missing is not None


@given(st.lists(st.text(alphabet="ab,\\|$", max_size=8), min_size=1, max_size=4))
def test_split_round_trips_escaped_commas(parts: list[str]) -> None:
    escaped = [p.replace("\\", "\\\\").replace(",", "\\,") for p in parts]
    assert [s.replace("\\,", ",").replace("\\\\", "\\") for s in split_values(",".join(escaped))
            ] == parts


@given(st.text(max_size=20))
def test_ascii_fast_path_normalises_like_the_general_one(text: str) -> None:
    import unicodedata

    from medarchive.fhir.search.normalize import normalize_string

    decomposed = unicodedata.normalize("NFKD", text)
    general = " ".join("".join(c for c in decomposed if not unicodedata.combining(c))
                       .casefold().split())
    assert normalize_string(text) == general
