"""Value semantics: UCUM conversion, date/time comparison, arithmetic and boundaries."""

from __future__ import annotations

from decimal import Decimal

import pytest

from medarchive.fhirpath import (
    Date,
    DateTime,
    FhirPathError,
    Quantity,
    Time,
    evaluate,
    temporal,
    ucum,
)
from medarchive.fhirpath.values import literal_text


@pytest.mark.parametrize(("value", "source", "target", "expected"), [
    ("1", "g", "mg", "1000"),
    ("185", "[lb_av]", "kg", "83.91458845"),
    ("1", "[in_i]", "cm", "2.54"),
    ("2", "h", "min", "120"),
    ("1", "wk", "d", "7"),
    ("1", "mmol/L", "umol/L", "1000"),
    ("1", "10*3/uL", "10*9/L", "1"),
    ("120", "mm[Hg]", "kPa", "15.998640"),
    ("37", "Cel", "[degF]", "98.6"),
    ("0", "Cel", "K", "273.15"),
    ("60", "{beats}/min", "/s", "1"),
])
def test_ucum_conversions(value: str, source: str, target: str, expected: str) -> None:
    converted = ucum.convert(Decimal(value), source, target)
    assert converted is not None
    assert converted == Decimal(expected)


@pytest.mark.parametrize(("a", "b"), [("g", "m"), ("kg", "[s]"), ("mo", "nonsense"),
                                      ("Cel", "g"), ("mmol/L", "mg/dL")])
def test_incommensurable_units_do_not_convert(a: str, b: str) -> None:
    assert ucum.convert(Decimal(1), a, b) is None


def test_unknown_units_are_invalid() -> None:
    assert ucum.is_valid("mg/dL")
    assert not ucum.is_valid("[s]")
    assert not ucum.is_valid("m/(s")


@pytest.mark.parametrize(("a", "b", "expected"), [
    (Date((2018, 3)), Date((2018, 3, 1)), None),
    (Date((2018, 2)), Date((2018, 3, 1)), -1),
    (DateTime((2012, 4, 15, 15, 0, 0), None, 120), DateTime((2012, 4, 15, 16, 0, 0), None, 180),
     0),
    (DateTime((2012, 4, 15, 15, 30, 31)), DateTime((2012, 4, 15, 15, 30, 31), 0), 0),
    (DateTime((2012, 4, 15, 15, 30, 31)), DateTime((2012, 4, 15, 15, 30, 31), 100), -1),
    (DateTime((2012, 4, 15, 15, 0, 0), None, 0), DateTime((2012, 4, 15, 10, 0, 0)), None),
    (DateTime((2012, 4, 15, 15, 0, 0), None, 0), DateTime((2012, 4, 20, 10, 0, 0)), -1),
    (Date((1974, 12, 25)), DateTime((2026, 1, 1, 10, 0), None, 60), -1),
    (Time((10, 30)), Time((10, 30, 0)), None),
])
def test_temporal_compare(a: object, b: object, expected: int | None) -> None:
    assert temporal.compare(a, b) == expected  # type: ignore[arg-type]


def test_time_and_date_are_not_comparable() -> None:
    with pytest.raises(TypeError):
        temporal.compare(Time((10,)), Date((2020,)))


@pytest.mark.parametrize(("expr", "expected"), [
    ("@2020-01-31 + 1 month", "2020-02-29"),
    ("@2019-12-31 + 1 year", "2020-12-31"),
    ("@2020-03-01 - 1 day", "2020-02-29"),
    ("@2020-03-01T10:00:00+05:00 + 90 minutes", "2020-03-01T11:30:00+05:00"),
    ("@2020-03-01T23:59:59.999 + 1 'ms'", "2020-03-02T00:00:00.000"),
    ("@2020 + 18 months", "2021"),
    ("@T23:30 + 1 hour", "00:30"),
    ("@1973-12-25 + 7.7 days", "1974-01-01"),
])
def test_date_arithmetic(expr: str, expected: str) -> None:
    [value] = evaluate({}, expr)
    assert value.to_json() == expected


@pytest.mark.parametrize("expr", ["@2020-01-01 + 1 'mo'", "@2020-01-01 + 1 'a'",
                                  "@2020-01-01 - 1 'cm'", "@2020-01-01 + 7", "@T10:00 + 1 day"])
def test_invalid_date_arithmetic_raises(expr: str) -> None:
    with pytest.raises(FhirPathError):
        evaluate({}, expr)


@pytest.mark.parametrize(("expr", "expected"), [
    ("1.587.lowBoundary()", "1.58650000"),
    ("1.587.highBoundary(2)", "1.59"),
    ("(-1.587).lowBoundary(2)", "-1.59"),
    ("(-0.0034).lowBoundary(1)", "-0.0"),
    ("120.lowBoundary(2)", "119.50"),
    ("@2014.highBoundary(6)", "2014-12"),
    ("@2016-02.highBoundary()", "2016-02-29"),
    ("@2014-01-01T08.lowBoundary(17)", "2014-01-01T08:00:00.000+14:00"),
    ("@T10:30.highBoundary(9)", "10:30:59.999"),
    ("1.58700.precision()", "5"),
    ("@2014-01-05T10:30:00.000.precision()", "17"),
])
def test_boundaries_and_precision(expr: str, expected: str) -> None:
    [value] = evaluate({}, expr)
    text = format(value, "f") if isinstance(value, Decimal) else str(value)
    assert text == expected


def test_literal_text_round_trips_each_value_kind() -> None:
    assert literal_text(Quantity(Decimal("1.50"), "mg")) == "1.50 'mg'"
    assert literal_text(Quantity(Decimal(2), "weeks")) == "2 weeks"
    assert literal_text(DateTime((2015,))) == "@2015T"
    assert literal_text(DateTime((2015, 2, 4, 14, 34, 28), 123, -600)) == \
        "@2015-02-04T14:34:28.123-10:00"
    assert literal_text(Time((14, 34))) == "@T14:34"
    assert literal_text("it's") == "'it\\'s'"


def test_invalid_calendar_dates_do_not_parse() -> None:
    assert Date.parse("2021-02-29") is None
    assert DateTime.parse("2021-13-01T00:00:00Z") is None
    assert Time.parse("24:00") is None
    assert Date.parse("2020-02-29") == Date((2020, 2, 29))
