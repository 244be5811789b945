"""The UI's pure parts: Soundex and ranking, Accept-Language, CSRF checks, form checks (the
Questionnaire-driven ones: fields, answers, constraints, extraction), SVG charts, and the
Chinese catalogue (complete, compiles, placeholders kept)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from babel.messages.pofile import read_po
from hypothesis import given
from hypothesis import strategies as st

from medarchive.errors import Forbidden
from medarchive.web.ui import csrf, i18n
from medarchive.web.ui.charts import Series, bar_chart, line_chart
from medarchive.web.ui.entry import FORMS, localized
from medarchive.web.ui.questionnaire import KINDS, fields_of, items, questionnaire
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
        target = message.string if isinstance(message.string, str) else \
            (message.string or ("",))[0]
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


def vital_signs(fields: dict[str, str], patient: str, now: datetime) -> Any:
    return FORMS["vitals"](fields, patient, now)


def test_vital_signs_become_a_response_and_profile_observations() -> None:
    checked = vital_signs({"when": "2026-03-01T10:00", "heart_rate": "72", "systolic": "120",
                           "diastolic": "80", "temperature": "37,2"}, "p1", NOW)
    assert checked.ok
    response, *observations = checked.resources
    assert response["resourceType"] == "QuestionnaireResponse"
    assert response["questionnaire"] == \
        "https://medarchive.example/fhir/Questionnaire/vital-signs|1.0.0"
    assert [i["linkId"] for i in response["item"]] == ["when", "bp", "heart_rate",
                                                       "temperature"]
    assert response["item"][2]["answer"] == [{"valueInteger": 72}]
    codes = [r["code"]["coding"][0]["code"] for r in observations]
    assert codes == ["85354-9", "8867-4", "8310-5"]
    assert [c["valueQuantity"]["value"] for c in observations[0]["component"]] == [120, 80]
    assert observations[2]["valueQuantity"] == {
        "value": 37.2, "unit": "°C", "system": "http://unitsofmeasure.org", "code": "Cel"}
    assert all(r["subject"] == {"reference": "Patient/p1"} for r in checked.resources)
    assert all(r["effectiveDateTime"] == "2026-03-01T10:00:00+00:00" for r in observations)
    assert all(r["derivedFrom"] == [{"reference": "urn:uuid:questionnaire-response"}]
               for r in observations)


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
    ({"when": "2026-03-01T10:00", "heart_rate": "72.5"}, "heart_rate",
     "Enter a whole number."),
    ({"when": "2026-03-01T10:00", "temperature": "37.25"}, "temperature",
     "Use at most %(n)s decimal places."),
    ({"when": "2026-03-01T10:00", "weight": "nan"}, "weight", "Enter a number."),
    ({"when": "2026-03-01T10:00", "systolic": "120", "diastolic": "125"}, "diastolic",
     "Diastolic pressure must be below systolic."),
])
def test_vital_sign_messages(fields: dict[str, str], field: str, message: str) -> None:
    checked = vital_signs(fields, "p1", NOW)
    assert not checked.resources and checked.errors[field][0] == message


@given(st.one_of(st.decimals().map(str), st.floats().map(str), st.integers().map(str),
                 st.text(max_size=20)))
def test_numbers_are_parsed_safely_and_kept_in_range(raw: str) -> None:
    checked = vital_signs({"when": "2026-03-01T10:00", "heart_rate": raw, "temperature": raw},
                          "p1", NOW)
    for observation in checked.resources[1:]:
        value = observation["valueQuantity"]["value"]
        assert 20 <= value <= 250 if observation["code"]["coding"][0]["code"] == "8867-4" \
            else 30 <= value <= 43
    assert checked.ok or set(checked.errors) <= {"heart_rate", "temperature"}


def test_problem_and_allergy_are_extracted_by_definition() -> None:
    problem = FORMS["problem"]({"problem": " Gout  of the foot", "clinical_status": "resolved",
                                "onset": "2025-01-02", "abatement": "2025-02-01"}, "p1", NOW)
    condition = problem.resources[1]
    assert condition["code"] == {"text": "Gout of the foot"}
    assert condition["clinicalStatus"]["coding"][0]["code"] == "resolved"
    assert condition["onsetDateTime"] == "2025-01-02"
    assert condition["abatementDateTime"] == "2025-02-01"
    assert condition["category"][0]["coding"][0]["code"] == "problem-list-item"
    # enableWhen: no resolution date unless the problem is resolved
    active = FORMS["problem"]({"problem": "Gout", "clinical_status": "active",
                               "abatement": "2025-02-01"}, "p1", NOW)
    assert "abatementDateTime" not in active.resources[1]
    assert [i["linkId"] for i in active.resources[0]["item"]] == ["problem", "clinical_status"]
    early = FORMS["problem"]({"problem": "Gout", "clinical_status": "resolved",
                              "onset": "2025-03-01", "abatement": "2025-02-01"}, "p1", NOW)
    assert early.errors == {"abatement": (
        "The problem cannot be resolved before its onset.", {})}
    assert localized("problem", early.errors, "zh")["abatement"][0] == \
        "问题的解决日期不能早于起病日期。"
    allergy = FORMS["allergy"]({"substance": "Latex", "criticality": "high",
                                "reaction": "Hives"}, "p1", NOW).resources[1]
    assert allergy["criticality"] == "high" and allergy["patient"] == {"reference":
                                                                       "Patient/p1"}
    assert allergy["reaction"] == [{"manifestation": [{"text": "Hives"}]}]
    wrong = FORMS["allergy"]({"substance": "", "criticality": "severe"}, "p1", NOW)
    assert wrong.errors == {"substance": ("This field is required.", {}),
                            "criticality": ("Choose one of the options.", {})}


def test_questionnaire_items_become_fields_in_both_languages() -> None:
    vitals = {f.link_id: f for f in fields_of(questionnaire("vitals"), "en")}
    heart = vitals["heart_rate"]
    assert (heart.label, heart.input_type, heart.low, heart.high, heart.step) == (
        "Heart rate (/min)", "number", "20", "250", "1")
    assert vitals["when"].required and vitals["when"].input_type == "datetime-local"
    assert [c.link_id for c in vitals["bp"].children] == ["systolic", "diastolic"]
    assert vitals["temperature"].step == "0.1" and vitals["weight"].low == "0.3"
    chinese = {f.link_id: f for f in fields_of(questionnaire("problem"), "zh")}
    assert chinese["problem"].label == "问题" and chinese["problem"].max_length == 200
    assert chinese["clinical_status"].options == (("active", "活动"), ("resolved", "已解决"))
    assert chinese["abatement"].enable_when == (("clinical_status", "resolved"),)
    for kind in KINDS:  # every text a user sees has its Chinese translation
        for item in items(questionnaire(kind)).values():
            assert fields_of({"item": [item]}, "zh")[0].label != item["text"], item["linkId"]


@given(st.dictionaries(st.sampled_from(["when", "start", "problem", "clinical_status", "onset",
                                        "substance", "criticality", "reaction", "medication",
                                        "dosage", "title", "text", "reason", "heart_rate",
                                        "systolic", "diastolic", "weight", "temperature",
                                        "abatement", "spo2"]),
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


def test_the_consent_page_names_a_granular_scope_condition() -> None:
    from medarchive.web.ui.authorize import describe
    lab = ("patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/"
           "observation-category|laboratory,vital-signs")
    english = describe(lab, i18n.translations("en").gettext)
    assert english == ("read, search Observation of the selected patient, only those where "
                       "category = laboratory / vital-signs")
    assert describe("patient/Observation.rs", i18n.translations("en").gettext) \
        == "read, search Observation of the selected patient"
    chinese = describe(lab, i18n.translations("zh").gettext)
    assert "category = laboratory / vital-signs" in chinese and "仅限" in chinese
