"""Format checks of the R4 primitive datatypes: generated valid values pass, broken ones fail."""

from __future__ import annotations

import base64
from datetime import date, datetime, time
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medarchive.fhir.validate.primitives import (
    CHECKERS,
    INT_MAX,
    INT_MIN,
    check_primitive,
    string_warning,
)


def ok(type_code: str, value: object) -> bool:
    return check_primitive(type_code, value) is None


def _zone(minutes: int) -> str:
    if minutes == 0:
        return "Z"
    sign = "+" if minutes > 0 else "-"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


zones = st.integers(-14 * 60, 14 * 60).map(_zone)
fractions = st.one_of(st.just(""), st.from_regex(r"\.[0-9]{1,9}", fullmatch=True))


def _time_text(moment: time, fraction: str) -> str:
    return moment.strftime("%H:%M:%S") + fraction


@given(st.dates(min_value=date(1, 1, 1)), st.integers(1, 3))
def test_dates_from_the_grammar_are_accepted(day: date, precision: int) -> None:
    text = f"{day.year:04d}-{day.month:02d}-{day.day:02d}"[: {1: 4, 2: 7, 3: 10}[precision]]
    assert ok("date", text)
    assert ok("dateTime", text)


@given(st.datetimes(min_value=datetime(1, 1, 2)), st.times(), fractions, zones)
def test_datetimes_and_instants_from_the_grammar_are_accepted(
        day: datetime, moment: time, fraction: str, zone: str) -> None:
    text = f"{day.year:04d}-{day.month:02d}-{day.day:02d}T{_time_text(moment, fraction)}{zone}"
    assert ok("dateTime", text)
    assert ok("instant", text)


@given(st.times(), fractions)
def test_times_from_the_grammar_are_accepted(moment: time, fraction: str) -> None:
    assert ok("time", _time_text(moment, fraction))


@pytest.mark.parametrize(("type_code", "text"), [
    ("date", "0000"), ("date", "2021-02-29"), ("date", "2020-13"), ("date", "2020-1-01"),
    ("date", "2020-01-01T10:00:00Z"), ("dateTime", "2020-01-01T10:00:00"),
    ("dateTime", "2020-01-01T10:00Z"), ("dateTime", "2020-01-01T24:00:00Z"),
    ("dateTime", "2020-04-31"), ("dateTime", "2020-01-01T10:00:00+15:00"),
    ("instant", "2020-01-01"), ("instant", "2020-01-01T10:00:00"), ("time", "25:00:00"),
    ("time", "10:00"), ("time", "10:00:00Z"), ("dateTime", " 2020"),
])
def test_broken_dates_and_times_are_rejected(type_code: str, text: str) -> None:
    assert not ok(type_code, text)


def test_leap_day_and_leap_second() -> None:
    assert ok("date", "2020-02-29") and ok("date", "2000-02-29")
    assert not ok("date", "1900-02-29")
    assert ok("instant", "2016-12-31T23:59:60Z")


@given(st.lists(st.from_regex(r"[^ \t\n\x0b\x0c\r]{1,8}", fullmatch=True), min_size=1,
                max_size=4), st.sampled_from([" ", "\t"]))
def test_codes_with_single_inner_whitespace_are_accepted(tokens: list[str], space: str) -> None:
    assert ok("code", space.join(tokens))


@pytest.mark.parametrize("text", [" a", "a ", "a  b", "", "a\n\nb"])
def test_codes_with_bad_whitespace_are_rejected(text: str) -> None:
    assert not ok("code", text)


@given(st.from_regex(r"[A-Za-z0-9\-\.]{1,64}", fullmatch=True))
def test_ids_from_the_grammar_are_accepted(text: str) -> None:
    assert ok("id", text)


@pytest.mark.parametrize("text", ["a" * 65, "a_b", "a b", "", "é"])
def test_bad_ids_are_rejected(text: str) -> None:
    assert not ok("id", text)


@given(st.integers(0, 2), st.lists(st.integers(0, 10**9), min_size=1, max_size=6))
def test_oids_from_the_grammar_are_accepted(first: int, rest: list[int]) -> None:
    assert ok("oid", "urn:oid:" + ".".join(str(n) for n in [first, *rest]))


@pytest.mark.parametrize("text", ["urn:oid:3.1", "urn:oid:1.02", "1.2.3", "urn:oid:1"])
def test_bad_oids_are_rejected(text: str) -> None:
    assert not ok("oid", text)


@given(st.uuids())
def test_uuids_are_accepted_in_lower_case_only(value: object) -> None:
    assert ok("uuid", f"urn:uuid:{value}")
    text = str(value).upper()
    assert ok("uuid", f"urn:uuid:{text}") == (text == text.lower())


@given(st.text(alphabet=st.characters(blacklist_characters=" \t\n\x0b\x0c\r"), min_size=1))
def test_uris_without_whitespace_are_accepted(text: str) -> None:
    for type_code in ("uri", "url", "canonical"):
        assert ok(type_code, text)


@pytest.mark.parametrize("text", ["http://a b", "", "a\n"])
def test_uris_with_whitespace_or_empty_are_rejected(text: str) -> None:
    assert not ok("uri", text)


@given(st.binary(min_size=1, max_size=300), st.booleans())
def test_base64_from_the_grammar_is_accepted(data: bytes, wrapped: bool) -> None:
    text = base64.encodebytes(data).decode() if wrapped else base64.b64encode(data).decode()
    assert ok("base64Binary", text)


@pytest.mark.parametrize("text", ["QQ", "Q===", "QQ=a", "Q@==", "", "QUJD!"])
def test_bad_base64_is_rejected(text: str) -> None:
    assert not ok("base64Binary", text)


@given(st.integers(INT_MIN, INT_MAX))
def test_integers_in_range_are_accepted(value: int) -> None:
    assert ok("integer", value)
    assert ok("unsignedInt", value) == (value >= 0)
    assert ok("positiveInt", value) == (value >= 1)


@pytest.mark.parametrize(("type_code", "value"), [
    ("integer", INT_MAX + 1), ("integer", INT_MIN - 1), ("integer", 1.0), ("integer", "1"),
    ("integer", True), ("positiveInt", 0), ("unsignedInt", -1), ("decimal", "1.5"),
    ("decimal", True), ("decimal", float("nan")), ("decimal", float("inf")),
    ("boolean", "true"), ("boolean", 1), ("string", 5), ("string", ""),
])
def test_wrong_json_types_are_rejected(type_code: str, value: object) -> None:
    assert not ok(type_code, value)


@given(st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                 st.decimals(allow_nan=False, allow_infinity=False)))
def test_finite_numbers_are_decimals(value: object) -> None:
    assert ok("decimal", value)


def test_decimal_accepts_decimal_objects() -> None:
    assert ok("decimal", Decimal("1.50"))
    assert not ok("decimal", Decimal("NaN"))


def test_strings_and_their_should_rules() -> None:
    assert ok("string", "  padded  ") and ok("markdown", "# title\n\ntext")
    assert not ok("string", "x" * (1024 * 1024 + 1))
    assert string_warning("a\x01b") is not None
    assert string_warning("   ") is not None
    assert string_warning("tab\tand\r\nnewline") is None


def test_xhtml_div() -> None:
    good = '<div xmlns="http://www.w3.org/1999/xhtml"><p>hi</p></div>'
    assert ok("xhtml", good)
    assert not ok("xhtml", "<div><p>hi</p></div>")
    assert not ok("xhtml", "<p>hi</p>")
    assert not ok("xhtml", good.replace("<p>hi</p>", "<script>x()</script>"))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8)


@given(st.sampled_from(sorted(CHECKERS)), json_values)
def test_random_values_never_crash(type_code: str, value: object) -> None:
    result = check_primitive(type_code, value)
    assert result is None or isinstance(result, str)


@given(st.text())
def test_random_text_never_crashes_and_empty_text_fails(text: str) -> None:
    for type_code in CHECKERS:
        result = check_primitive(type_code, text)
        if text == "":
            assert result is not None
