"""Index extraction: values to rows (R4 Search §3.1.1.5), the real indexer on R4 resources."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medarchive.fhir.search.dates import MAX_MICROS, date_range
from medarchive.fhir.search.entries import (
    CompositeEntry,
    ReferenceEntry,
    StringEntry,
    TokenEntry,
)
from medarchive.fhir.search.extract import (
    date_ranges,
    parse_reference,
    quantity_rows,
    reference_rows,
    token_rows,
)
from medarchive.fhir.search.index import Indexer, build_indexer, implied_systems
from medarchive.fhir.search.text import content_words, text_words, words
from medarchive.fhir.spec import load_spec

UCUM = "http://unitsofmeasure.org"


@pytest.fixture(scope="module")
def indexer() -> Indexer:
    return build_indexer(load_spec())


def test_token_rows_by_datatype() -> None:
    concept = {"coding": [{"system": "s", "code": "c", "display": "Some Thing"}],
               "text": "Plain words"}
    tokens, texts = token_rows("code", concept)
    assert tokens == [TokenEntry("code", "s", "c", "Some Thing")]
    assert [t.value for t in texts] == ["plain words", "some thing"]
    ident = {"system": "urn:mrn", "value": "7", "type": {
        "coding": [{"system": "urn:v2", "code": "MR"}], "text": "Record"}}
    tokens, texts = token_rows("identifier", ident)
    assert tokens == [TokenEntry("identifier", "urn:mrn", "7"),
                      TokenEntry("identifier:of-type", "urn:v2", "7", "MR")]
    assert texts == [StringEntry("identifier:text", "record", "Record")]
    assert token_rows("active", True)[0] == [TokenEntry("active", None, "true")]
    assert token_rows("gender", "male", {"male": "urn:g"})[0] == \
        [TokenEntry("gender", "urn:g", "male")]
    assert token_rows("x", {"start": "2020"}) == ([], [])


def test_reference_rows() -> None:
    assert parse_reference("Patient/1/_history/3") == ("Patient", "1", None)
    assert parse_reference("http://other.org/fhir/Patient/1") == \
        (None, None, "http://other.org/fhir/Patient/1")
    assert parse_reference("http://x.org/ValueSet/a|1.0") == (None, None, "http://x.org/ValueSet/a")
    assert parse_reference("nonsense") is None
    refs, tokens = reference_rows("subject", {"reference": "#contained",
                                              "identifier": {"system": "s", "value": 9}})
    assert refs == [] and tokens == [TokenEntry("subject:identifier", "s", "9")]
    assert reference_rows("subject", {"reference": "Group/g"})[0] == \
        [ReferenceEntry("subject", "Group", "g")]


def test_date_ranges() -> None:
    assert list(date_ranges({"start": "2020"})) == [(date_range("2020")[0], MAX_MICROS)]
    reversed_period = list(date_ranges({"start": "2021", "end": "2020"}))
    assert reversed_period == [(date_range("2020")[0], date_range("2021")[1])]
    assert list(date_ranges({"event": ["2020-01-01", "2020-01-02"]})) == \
        [date_range("2020-01-01"), date_range("2020-01-02")]
    assert list(date_ranges("not a date")) == []


def test_quantity_rows() -> None:
    [row] = quantity_rows("value", {"value": 2.5, "system": UCUM, "code": "mg", "unit": "mg"})
    assert (row.value, row.low, row.high) == (2.5, 2.45, 2.55)
    assert row.canonical_code == "g" and row.canonical_low == pytest.approx(0.00245)
    [money] = quantity_rows("price", {"value": 10, "currency": "EUR"})
    assert (money.system, money.code) == ("urn:iso:std:iso:4217", "EUR")
    [interval] = quantity_rows("context-quantity", {"low": {"value": 1, "code": "a",
                                                            "system": UCUM},
                                                    "high": {"value": 5}})
    assert (interval.low, interval.high) == (0.5, 5.5) and interval.canonical_code == "s"
    [unitless] = quantity_rows("value", {"value": 3, "unit": "tablets"})
    assert unitless.code == "tablets" and unitless.canonical_code is None


def test_words() -> None:
    assert words("Heart-Failure, heart  ATTACK") == ["heart", "failure", "attack"]
    resource = {"resourceType": "Observation", "status": "final",
                "text": {"status": "generated", "div": "<div>Näive &amp; <b>bold</b></div>"},
                "code": {"coding": [{"code": "8867-4", "display": "Heart rate"}]},
                "subject": {"reference": "Patient/1", "display": "Ann Lee"}}
    assert text_words(resource) == ["naive", "bold"]
    assert content_words(resource) == ["naive", "bold", "heart", "rate", "ann", "lee"]


def test_implied_systems_come_from_required_bindings() -> None:
    spec = load_spec()
    gender = implied_systems(spec, "Patient.gender")
    assert gender is not None and gender["male"] == "http://hl7.org/fhir/administrative-gender"
    assert implied_systems(spec, "Patient.identifier") is None  # not a code
    assert implied_systems(spec, "Observation.code") is None  # CodeableConcept, example binding


def test_indexer_on_a_blood_pressure(indexer: Indexer) -> None:
    bp = {"resourceType": "Observation", "id": "bp", "status": "final",
          "code": {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]},
          "subject": {"reference": "Patient/p"}, "effectiveDateTime": "2024-01-01T10:00:00Z",
          "component": [{"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
                         "valueQuantity": {"value": 120, "system": UCUM, "code": "mm[Hg]"}}]}
    entries = indexer(bp)
    assert TokenEntry("status", "http://hl7.org/fhir/observation-status", "final") in \
        entries.tokens
    assert {"code", "status", "subject", "patient", "date", "component-code",
            "component-value-quantity", "component-code-value-quantity"} <= entries.params
    plain = [c for c in entries.composites if c.param == "component-code-value-quantity"
             and not c.canonical]
    assert plain == [CompositeEntry("component-code-value-quantity", "http://loinc.org",
                                    "8480-6", None, None, UCUM, "mm[Hg]", 119.5, 120.5)]
    assert any(c.canonical and c.code2 == "g.m-1.s-2" for c in entries.composites)
    assert "value-quantity" not in entries.params


def test_full_text_can_be_switched_off() -> None:
    lean = build_indexer(load_spec(), full_text=False)
    entries = lean({"resourceType": "Patient", "id": "x", "name": [{"family": "Lee"}]})
    assert not [s for s in entries.strings if s.param in ("_text", "_content")]
    assert "family" in entries.params


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) |
                    st.dictionaries(st.sampled_from(["value", "code", "system", "coding",
                                                     "start", "end", "low", "high", "reference",
                                                     "identifier", "text", "unit"]),
                                    inner, max_size=4), max_leaves=12))
def test_extraction_never_raises(value: Any) -> None:
    token_rows("p", value)
    reference_rows("p", value)
    list(date_ranges(value))
    quantity_rows("p", value)
