"""NEWS2 bands and risk levels (RCP 2017 chart 1 and 2), with hand-worked examples."""

from __future__ import annotations

import pytest

from medarchive.devices.news2 import alert_flag, score


def test_normal_vitals_score_zero_and_raise_no_flag() -> None:
    news = score({"respiratory_rate": 16, "spo2": 97, "systolic": 120, "heart_rate": 70,
                  "temperature": 37.0})
    assert (news.total, news.risk, news.missing) == (0, "low", ())
    assert alert_flag(news, "Patient/1", "2024-05-01T12:00:00Z") is None


def test_septic_picture_is_high_risk() -> None:
    # RR 26 (3) + SpO2 93 (2) + SBP 95 (2) + HR 120 (2) + T 39.5 (2) = 11
    news = score({"respiratory_rate": 26, "spo2": 93, "systolic": 95, "heart_rate": 120,
                  "temperature": 39.5})
    assert (news.total, news.risk) == (11, "high")
    flag = alert_flag(news, "Patient/7", "2024-05-01T12:00:00Z")
    assert flag is not None and flag["subject"] == {"reference": "Patient/7"}
    assert "NEWS2 11 (high risk)" in flag["code"]["text"]


def test_single_red_parameter_is_low_medium() -> None:
    news = score({"heart_rate": 38, "spo2": 98})
    assert (news.total, news.risk) == (3, "low-medium")
    assert "respiratory_rate" in news.missing


@pytest.mark.parametrize(("rr", "points"), [(8, 3), (9, 1), (11, 1), (12, 0), (20, 0),
                                            (21, 2), (24, 2), (25, 3)])
def test_respiratory_rate_band_edges(rr: int, points: int) -> None:
    assert dict(score({"respiratory_rate": rr}).points)["respiratory_rate"] == points


def test_oxygen_and_confusion_count() -> None:
    news = score({"spo2": 96}, on_oxygen=True, alert=False)
    assert (news.total, news.risk) == (5, "medium")
