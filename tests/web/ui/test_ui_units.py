"""The UI's pure parts: Soundex and ranking, Accept-Language, CSRF checks, form checks, SVG
charts, and the Chinese catalogue (complete, compiles, placeholders kept)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from babel.messages.pofile import read_po
from hypothesis import given
from hypothesis import strategies as st

from medarchive.errors import Forbidden
from medarchive.web.ui import csrf, i18n
from medarchive.web.ui.charts import Series, bar_chart, line_chart
from medarchive.web.ui.forms import FORMS, vital_signs
from medarchive.web.ui.search import closeness, soundex

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PO = i18n.LOCALE_DIR / "zh_Hans_CN" / "LC_MESSAGES" / "messages.po"


def test_soundex_known_codes() -> None:
    for word, code in (("Robert", "R163"), ("Rupert", "R163"), ("Ashcraft", "A261"),
                       ("Tymczak", "T522"), ("Pfister", "P236"), ("Perez", "P620"),
                       ("Peres", "P620"), ("", "")):
        assert soundex(word) == code, word


@given(st.text(max_size=30))
def test_soundex_shape(word: str) -> None:
    code = soundex(word)
    assert code == "" or re.fullmatch(r"[A-Z][0-9]{3}", code)


def test_closeness_tolerates_typos_but_not_strangers() -> None:
    patient = {"name": [{"family": "Johnson", "given": ["Mary"]}]}
    assert closeness("Jonson", patient) >= 0.85
    assert closeness("joh", patient) >= 0.9
    assert closeness("Xavier", patient) < 0.7


@given(st.text(max_size=80))
def test_accept_language_never_fails(header: str) -> None:
    assert isinstance(i18n.parse_accept_language(header), list)


def test_language_choice() -> None:
    assert i18n.choose(None, "zh-CN,zh;q=0.9,en;q=0.8").code == "zh"
    assert i18n.choose(None, "fr-FR, en;q=0.5").code == "en"
    assert i18n.choose(None, "zh;q=0, en").code == "en"
    assert i18n.choose("zh", "en").code == "zh"
    assert i18n.choose("xx", None).code == "en"
    assert i18n.choose(None, "zh-Hans").gettext("Log in") == "登录"
    assert i18n.choose(None, "en").gettext("") == ""


def test_catalogue_is_complete_and_keeps_placeholders() -> None:
    with PO.open("rb") as handle:
        catalogue = read_po(handle)
    for message in catalogue:
        if not message.id:
            continue
        source = message.id if isinstance(message.id, str) else message.id[0]
        target = message.string if isinstance(message.string, str) else message.string[0]
        assert target, f"untranslated: {source!r}"
        assert sorted(re.findall(r"%\(\w+\)\w", source)) == sorted(
            re.findall(r"%\(\w+\)\w", target)), source


def test_csrf_checks() -> None:
    token = csrf.new_token()
    host = {"origin": "http://ward.example:8080"}
    csrf.check(token, token, host, "ward.example:8080")
    csrf.check(token, token, {}, "ward.example:8080")  # no Origin: the token alone decides
    for cookie, sent, headers in ((token, "other", host), (None, token, host),
                                  (token, None, host),
                                  (token, token, {"origin": "https://evil.example"}),
                                  (token, token, {"referer": "https://evil.example/x"}),
                                  (token, token, {"origin": "null"})):
        with pytest.raises(Forbidden):
            csrf.check(cookie, sent, headers, "ward.example:8080")


def test_vital_signs_become_profile_observations() -> None:
    checked = vital_signs({"when": "2026-03-01T10:00", "heart_rate": "72", "systolic": "120",
                           "diastolic": "80", "temperature": "37,2"}, "p1", NOW)
    assert checked.ok
    codes = [r["code"]["coding"][0]["code"] for r in checked.resources]
    assert codes == ["8867-4", "8310-5", "85354-9"]
    assert checked.resources[1]["valueQuantity"] == {
        "value": 37.2, "unit": "°C", "system": "http://unitsofmeasure.org", "code": "Cel"}
    assert all(r["subject"] == {"reference": "Patient/p1"} for r in checked.resources)


@pytest.mark.parametrize(("fields", "field", "message"), [
    ({"when": "2026-03-01T10:00"}, "heart_rate", "Enter at least one vital sign."),
    ({"when": "", "heart_rate": "70"}, "when", "This field is required."),
    ({"when": "2027-01-01T10:00", "heart_rate": "70"}, "when",
     "The date cannot be in the future."),
    ({"when": "2026-03-01T10:00", "systolic": "120"}, "diastolic",
     "Enter both systolic and diastolic pressure."),
    ({"when": "2026-03-01T10:00", "spo2": "101"}, "spo2",
     "Enter a value between %(low)s and %(high)s."),
    ({"when": "yesterday", "heart_rate": "70"}, "when", "Enter a valid date and time."),
])
def test_vital_sign_messages(fields: dict[str, str], field: str, message: str) -> None:
    checked = vital_signs(fields, "p1", NOW)
    assert not checked.resources and checked.errors[field][0] == message


@given(st.dictionaries(st.sampled_from(["when", "start", "problem", "clinical_status", "onset",
                                        "substance", "criticality", "reaction", "medication",
                                        "dosage", "title", "text", "reason", "heart_rate",
                                        "systolic", "diastolic", "weight"]),
                       st.text(max_size=40)))
def test_forms_never_fail_on_odd_input(fields: dict[str, str]) -> None:
    for check in FORMS.values():
        outcome = check(fields, "p1", NOW)
        assert outcome.ok == (not outcome.errors)
        assert outcome.ok or not outcome.resources


def test_charts_escape_text_and_scale() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    series = Series("<b>&", [(start + timedelta(days=n), 36.5 + n / 10) for n in range(5)])
    svg = str(line_chart('T"<x>', [series], "°C"))
    assert "<b>" not in svg and "&lt;b&gt;&amp;" in svg and 'aria-label="T&#34;&lt;x&gt;' in svg
    assert svg.count("<circle") == 5 and "2025-01-01" in svg and "2025-01-05" in svg
    assert str(line_chart("empty", [])) == ""
    bars = str(bar_chart("b", [("a", 1.0), ("<", 3.0)]))
    assert bars.count("<rect") == 2 and "&lt;" in bars
