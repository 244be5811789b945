"""Date ranges by precision (R4 Search §3.1.1.5.7), including property tests of the parser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medarchive.errors import BadRequest
from medarchive.fhir.search.dates import date_range, search_date_range
from medarchive.store.base import from_micros, to_micros


def span(text: str) -> tuple[datetime, datetime]:
    low, high = date_range(text)
    return from_micros(low), from_micros(high)


def test_precisions() -> None:
    assert span("2023") == (datetime(2023, 1, 1, tzinfo=UTC),
                            datetime(2023, 12, 31, 23, 59, 59, 999999, tzinfo=UTC))
    assert span("2024-02")[1] == datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=UTC)
    assert span("2024-02-03T04:05:06+02:00")[0] == datetime(2024, 2, 3, 2, 5, 6, tzinfo=UTC)
    assert span("2024-02-03T04:05:06.25Z") == (
        datetime(2024, 2, 3, 4, 5, 6, 250000, tzinfo=UTC),
        datetime(2024, 2, 3, 4, 5, 6, 259999, tzinfo=UTC))


@pytest.mark.parametrize("text", ["", "24", "2024-13", "2024-02-30", "2024-1-01", "abc",
                                  "2024-02-03T25:00:00Z", "2024-02-03T04:05:06+2"])
def test_malformed_is_a_400(text: str) -> None:
    with pytest.raises(BadRequest):
        search_date_range(text)


@given(st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30),
                    timezones=st.just(UTC)))
def test_every_instant_falls_in_each_coarser_range(moment: datetime) -> None:
    micros = to_micros(moment)
    texts = [f"{moment:%Y}", f"{moment:%Y-%m}", f"{moment:%Y-%m-%d}",
             moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
             moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")]
    for text in texts:
        low, high = date_range(text)
        assert low <= micros <= high, text
    assert date_range(texts[-1]) == (micros, micros)


@given(st.text(max_size=40))
def test_arbitrary_text_never_crashes(text: str) -> None:
    try:
        low, high = search_date_range(text)
    except BadRequest:
        return
    assert low <= high


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)),
       st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_offsets_shift_to_utc(moment: datetime, minutes: int) -> None:
    minutes -= minutes % 15
    sign = "+" if minutes >= 0 else "-"
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + f"{sign}{abs(minutes) // 60:02d}:" \
        f"{abs(minutes) % 60:02d}"
    expected = moment.replace(microsecond=0, tzinfo=UTC) - timedelta(minutes=minutes)
    assert date_range(text)[0] == to_micros(expected)
