"""Header and format parsing (R4 §3.1.0.5 ETags, §3.1.0.8 Prefer, §3.1.0.1.9 formats), with
property tests: every input either parses or raises BadRequest/406/415, never anything else."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medarchive.errors import BadRequest, FhirError, UnsupportedMediaType
from medarchive.fhir.bundle import etag
from medarchive.service.headers import (
    JSON_CONTENT,
    NotAcceptable,
    check_body_type,
    http_date,
    parse_etag,
    parse_http_date,
    parse_prefer,
    prefer_return,
    prefer_strict,
    response_type,
)


@given(st.integers(min_value=0, max_value=10**17))
def test_etag_round_trips(version: int) -> None:
    assert parse_etag(etag(version)) == version
    assert parse_etag(f'"{version}"') == version
    assert parse_etag(str(version)) == version


@given(st.text(max_size=30))
def test_etag_parser_accepts_or_rejects_cleanly(text: str) -> None:
    try:
        value = parse_etag(text)
    except BadRequest:
        return
    assert value >= 0 and str(value) in text


@pytest.mark.parametrize("text", ['W/"abc"', "", 'W/""', "W/-1", '"1" "2"', "1.5"])
def test_bad_etags_are_400(text: str) -> None:
    with pytest.raises(BadRequest):
        parse_etag(text)


def test_prefer_parses_several_preferences() -> None:
    assert parse_prefer('return=minimal; handling="strict", respond-async') == {
        "return": "minimal", "handling": "strict", "respond-async": ""}
    assert prefer_return("return=OperationOutcome") == "OperationOutcome"
    assert prefer_return(None) == "representation"
    assert prefer_return("handling=strict", default="minimal") == "minimal"
    assert prefer_strict("handling=strict") is True
    assert prefer_strict("return=minimal") is False
    assert prefer_strict(None) is False


@pytest.mark.parametrize("text", ["return=everything", "handling=sloppy"])
def test_bad_prefer_values_are_400(text: str) -> None:
    with pytest.raises(BadRequest):
        prefer_return(text)
        prefer_strict(text)


@given(st.text(max_size=60))
def test_prefer_parser_never_crashes(text: str) -> None:
    try:
        found = parse_prefer(text)
    except BadRequest:
        return
    assert all(name == name.lower() for name in found)


@given(st.sampled_from(["return", "handling", "wait"]),
       st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126,
                                      exclude_characters=';,"='), min_size=1, max_size=12))
def test_prefer_round_trips_simple_values(name: str, value: str) -> None:
    assert parse_prefer(f"{name}={value}")[name] == value
    assert parse_prefer(f'{name}="{value}"')[name] == value


@pytest.mark.parametrize(("fmt", "accept", "expected"), [
    (None, None, JSON_CONTENT),
    (None, "*/*", JSON_CONTENT),
    (None, "application/fhir+json", JSON_CONTENT),
    (None, "application/json", "application/json; charset=utf-8"),
    (None, "application/fhir+xml;q=0.9, application/fhir+json", JSON_CONTENT),
    (None, "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", JSON_CONTENT),
    ("json", "application/fhir+xml", JSON_CONTENT),
    ("application/fhir json", None, JSON_CONTENT),
    ("application/json", None, "application/json; charset=utf-8"),
])
def test_response_type(fmt: str | None, accept: str | None, expected: str) -> None:
    assert response_type(fmt, accept) == expected


@pytest.mark.parametrize(("fmt", "accept"), [
    ("xml", None), ("application/fhir+xml", None), ("ttl", None),
    (None, "application/fhir+xml"), (None, "text/html")])
def test_unproducible_formats_are_406(fmt: str | None, accept: str | None) -> None:
    with pytest.raises(NotAcceptable) as caught:
        response_type(fmt, accept)
    assert caught.value.status == 406


def test_body_types() -> None:
    assert check_body_type("application/fhir+json; charset=utf-8") == "application/fhir+json"
    assert check_body_type("application/json") == "application/json"
    assert check_body_type(None) == "application/fhir+json"
    for xml in ("application/fhir+xml", "text/xml"):
        with pytest.raises(UnsupportedMediaType):
            check_body_type(xml)
    with pytest.raises(UnsupportedMediaType):
        check_body_type("text/plain")


@given(st.text(max_size=40), st.one_of(st.none(), st.text(max_size=40)))
def test_format_negotiation_never_crashes(fmt: str, accept: str | None) -> None:
    try:
        assert response_type(fmt, accept).endswith("charset=utf-8")
    except FhirError as exc:
        assert exc.status == 406


@given(st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1),
                    timezones=st.just(UTC)))
def test_http_dates_round_trip_to_the_second(moment: datetime) -> None:
    assert parse_http_date(http_date(moment)) == moment.replace(microsecond=0)
    assert http_date(moment) == format_datetime(moment, usegmt=True)
    assert http_date(moment.astimezone(timezone(timedelta(hours=5)))) == http_date(moment)


def test_unparseable_http_dates_are_ignored() -> None:
    assert parse_http_date("yesterday") is None
