"""_summary and _elements (R4 Search §3.1.1.5.9-10) on real R4 element tables."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medarchive.errors import BadRequest
from medarchive.fhir.summary import (
    SUBSETTED,
    SUMMARY_MODES,
    Subsetter,
    parse_elements,
    parse_summary,
)

PATIENT = {
    "resourceType": "Patient", "id": "p1",
    "meta": {"versionId": "1", "tag": [{"system": "urn:t", "code": "keep"}]},
    "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
    "identifier": [{"system": "urn:mrn", "value": "1"}], "active": True,
    "name": [{"family": "Doe"}], "gender": "female", "birthDate": "1970-01-01",
    "_birthDate": {"extension": [{"url": "urn:x", "valueString": "y"}]},
    "deceasedBoolean": False, "maritalStatus": {"text": "married"},
    "photo": [{"contentType": "image/png"}], "contact": [{"name": {"family": "Roe"}}],
    "communication": [{"language": {"text": "en"}}],
    "extension": [{"url": "urn:e", "valueString": "z"}],
}
OBSERVATION = {"resourceType": "Observation", "id": "o1", "status": "final",
               "code": {"text": "hr"}, "valueQuantity": {"value": 60}, "note": [{"text": "n"}],
               "interpretation": [{"text": "normal"}]}


@pytest.fixture(scope="module")
def subsetter(spec: Any) -> Subsetter:
    return Subsetter(spec)


def tags(resource: dict[str, Any]) -> list[str]:
    return [t["code"] for t in resource.get("meta", {}).get("tag", [])]


def test_summary_true_keeps_summary_elements_only(subsetter: Subsetter) -> None:
    out = subsetter.summarize(dict(PATIENT), "true")
    assert {"identifier", "active", "name", "gender", "birthDate", "_birthDate",
            "deceasedBoolean"} <= set(out)
    assert not {"text", "maritalStatus", "photo", "contact", "communication",
                "extension"} & set(out)
    assert tags(out) == ["keep", "SUBSETTED"]
    assert PATIENT["meta"]["tag"] == [{"system": "urn:t", "code": "keep"}]  # input untouched


def test_summary_handles_choice_elements(subsetter: Subsetter) -> None:
    out = subsetter.summarize(dict(OBSERVATION), "true")
    assert "valueQuantity" in out and "status" in out and "code" in out
    assert "note" not in out and "interpretation" not in out


def test_summary_text_and_data(subsetter: Subsetter) -> None:
    text = subsetter.summarize(dict(PATIENT), "text")
    assert set(text) == {"resourceType", "id", "meta", "text"}
    obs_text = subsetter.summarize(dict(OBSERVATION), "text")
    assert {"status", "code"} <= set(obs_text) and "valueQuantity" not in obs_text
    data = subsetter.summarize(dict(PATIENT), "data")
    assert "text" not in data and "photo" in data and "SUBSETTED" in tags(data)
    assert subsetter.summarize(dict(PATIENT), "false") == PATIENT


def test_elements_keep_named_and_mandatory(subsetter: Subsetter) -> None:
    out = subsetter.select(dict(PATIENT), frozenset({"name", "birthDate"}))
    assert set(out) == {"resourceType", "id", "meta", "name", "birthDate", "_birthDate"}
    obs = subsetter.select(dict(OBSERVATION), frozenset({"note"}))
    assert set(obs) == {"resourceType", "id", "meta", "note", "status", "code"}
    assert "SUBSETTED" in tags(obs)


def test_element_of(subsetter: Subsetter) -> None:
    assert subsetter.element_of("Observation", "valueQuantity") == "value"
    assert subsetter.element_of("Patient", "_birthDate") == "birthDate"
    assert subsetter.element_of("Patient", "deceasedDateTime") == "deceased"
    assert subsetter.element_of("Patient", "valuenotachoice") == "valuenotachoice"


def test_parse_summary() -> None:
    for mode in SUMMARY_MODES:
        assert parse_summary(mode) == mode
    with pytest.raises(BadRequest):
        parse_summary("yes")


@given(st.text(max_size=20))
def test_parse_summary_accepts_only_the_five_modes(text: str) -> None:
    try:
        assert parse_summary(text) in SUMMARY_MODES
    except BadRequest:
        assert text.strip() not in SUMMARY_MODES


def test_parse_elements() -> None:
    assert parse_elements("name, birthDate,,") == {"name", "birthDate"}
    assert parse_elements("Patient.name,gender", "Patient") == {"name", "gender"}
    with pytest.raises(BadRequest):
        parse_elements("name.family")
    with pytest.raises(BadRequest):
        parse_elements("Observation.code", "Patient")


NAMES = st.from_regex(r"[a-z][A-Za-z0-9]{0,10}", fullmatch=True)


@given(st.lists(NAMES, max_size=5))
def test_parse_elements_round_trips(names: list[str]) -> None:
    assert parse_elements(",".join(names)) == set(names)


@given(st.text(max_size=40))
def test_parse_elements_never_crashes(text: str) -> None:
    try:
        names = parse_elements(text)
    except BadRequest:
        return
    assert all(name and "." not in name for name in names)


def test_subsetted_tag_is_not_duplicated(subsetter: Subsetter) -> None:
    once = subsetter.summarize(dict(PATIENT), "true")
    twice = subsetter.summarize(once, "true")
    assert tags(twice).count(SUBSETTED["code"]) == 1
