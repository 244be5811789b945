"""Blind indexes (crypto.blind): prefix chains match exactly when the plaintext prefix would,
and date forms answer ``eq`` exactly as the range semantics of fhir.search.match do."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from medarchive.crypto.blind import BlindIndex, blinded, date_forms, search_form
from medarchive.fhir.search.dates import date_range
from medarchive.fhir.search.entries import DateEntry, IndexEntries, StringEntry, TokenEntry
from medarchive.fhir.search.match import range_matches

BLIND = BlindIndex(b"k" * 32, max_prefix=8)
words = st.text(alphabet="abcé王 ", min_size=1, max_size=12)
dates = st.builds(
    lambda y, m, d, precision: [f"{y}", f"{y}-{m:02d}", f"{y}-{m:02d}-{d:02d}"][precision],
    st.integers(1900, 2030), st.integers(1, 12), st.integers(1, 28), st.integers(0, 2))


@given(value=words, search=words)
def test_prefix_rows_match_exactly_when_the_value_starts_with_the_search(value: str,
                                                                        search: str) -> None:
    rows = BLIND.entries("Patient", IndexEntries(strings=(StringEntry("family", value,
                                                                      value),)))
    (row,) = rows.strings  # one row a text, as on plaintext
    if len(search) <= BLIND.max_prefix:
        assert row.value.startswith(BLIND.chain("family", search)) == \
            value[:BLIND.max_prefix].startswith(search)
    assert (BLIND.exact("family", value) in {row.exact for row in rows.strings})
    assert value not in row.value or len(value) < 4


@given(stored=dates, searched=dates)
def test_date_forms_answer_eq_like_the_range_semantics(stored: str, searched: str) -> None:
    low, high = date_range(stored)
    search_low, search_high = date_range(searched)
    expected = range_matches("eq", low, high, search_low, search_high)
    assert (search_form(search_low, search_high) in date_forms(low, high)) == expected


def test_hmacs_depend_on_key_kind_and_param() -> None:
    other = BlindIndex(b"o" * 32)
    assert BLIND.chain("family", "smi") != other.chain("family", "smi")
    assert BLIND.chain("family", "smi") != BLIND.chain("given", "smi")
    assert BLIND.chain("family", "smi")[-8:] != BLIND.exact("family", "smi")[:8]
    assert len(BLIND.code("identifier", "MRN-1")) == 22


def test_what_is_blinded() -> None:
    assert blinded("Patient", "string", "address-city")
    assert blinded("Patient", "date", "birthdate") and not blinded("Patient", "date", "death-date")
    assert blinded("Encounter", "token", "identifier")  # visit numbers embed record numbers
    assert blinded("Observation", "token", "subject:identifier")
    assert not blinded("Organization", "string", "name")
    assert not blinded("Patient", "token", "gender")
    assert blinded(None, "string", "name")  # some type of a multi-type search


def test_entries_keep_what_is_not_identifying() -> None:
    found = IndexEntries(tokens=(TokenEntry("gender", None, "female"),
                                 TokenEntry("identifier", "urn:mrn", "MRN-1")),
                         dates=(DateEntry("birthdate", *date_range("1990-06-06")),
                                DateEntry("death-date", *date_range("2020"))))
    blinded_rows = BLIND.entries("Patient", found)
    assert blinded_rows.tokens[0] == found.tokens[0]
    assert blinded_rows.tokens[1].code == BLIND.code("identifier", "MRN-1")
    assert [d.param for d in blinded_rows.dates] == ["death-date"]
    assert {s.value for s in blinded_rows.strings} == {
        BLIND.date("birthdate", form) for form in ("1990", "1990-06", "1990-06-06")}
    encounter = BLIND.entries("Encounter", IndexEntries(tokens=found.tokens))
    assert encounter.tokens[1].code == BLIND.code("identifier", "MRN-1")


@given(kind=st.sampled_from("pedt"), param=words, value=words)
def test_remembered_digests_are_the_computed_ones_of_their_own_key(kind: str, param: str,
                                                                   value: str) -> None:
    other = BlindIndex(b"o" * 32)
    for _ in range(2):  # computed, then remembered
        assert BLIND.digest(kind, param, value) == BLIND._digest(kind, param, value)
        assert other.digest(kind, param, value) == other._digest(kind, param, value)
    assert BLIND.digest(kind, param, value) != other.digest(kind, param, value)
