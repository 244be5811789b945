"""The web UI over HTTP (Starlette TestClient): search, chart, forms, languages and the admin
pages, each checked through what the service path recorded (login, sessions and CSRF on
every SQL backend: test_ui_sessions.py)."""

from __future__ import annotations

import re
from typing import Any

import orjson
from starlette.testclient import TestClient

from medarchive.fhir.search.query import SearchQuery
from medarchive.service.request import FhirRequest
from medarchive.web.ui.questionnaire import KINDS, questionnaire

Site = Any


def fhir_search(site: Site, resource_type: str, **params: str) -> list[dict[str, Any]]:
    """A search through the service path as the system (what the UI stored)."""
    response = site.services.router.handle(FhirRequest("GET", resource_type,
                                                       tuple(params.items())))
    assert response.status == 200, response.content()
    return [e["resource"] for e in orjson.loads(response.content()).get("entry", ())]


def audit_count(site: Site, who: str, action: str) -> int:
    events = site.services.security.trail.events(0, 100_000)
    return sum(1 for _, e in events if e["agent"][0]["who"]["identifier"]["value"] == who
               and e["subtype"][0]["code"] == action)


def test_login_page_and_redirect(client: TestClient) -> None:
    page = client.get("/")
    assert page.url.path == "/login"
    assert '<html lang="en">' in page.text
    assert 'name="username"' in page.text and 'name="password"' in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"


def test_typo_tolerant_search_finds_the_patient(site: Site, doctor: TestClient) -> None:
    typo = site.family[:-1] + ("a" if site.family[-1] != "a" else "e")
    for query in (site.family, typo, site.family.lower()[:3], site.mrn):
        page = doctor.get("/", params={"q": query})
        assert f'href="/patients/{site.patient_id}"' in page.text, query
    nothing = doctor.get("/", params={"q": "Zzzyzx Qqqwv"})
    assert "0 patients found" in nothing.text


def test_chart_shows_every_section_and_each_read_is_audited(site: Site,
                                                            doctor: TestClient) -> None:
    searches = audit_count(site, "doctor", "search")
    page = doctor.get(f"/patients/{site.patient_id}")
    assert page.status_code == 200
    for section in ("vitals", "labs", "encounters", "problems", "medications", "allergies",
                    "imaging", "documents", "history"):
        assert f'id="{section}"' in page.text
    assert "<svg" in page.text and "Heart rate" in page.text
    assert audit_count(site, "doctor", "search") >= searches + 9


def test_the_chart_lists_active_alerts_only(site: Site, doctor: TestClient) -> None:
    for status, text in (("active", "Falls risk"), ("inactive", "Resolved sepsis alert")):
        body = orjson.dumps({"resourceType": "Flag", "status": status, "code": {"text": text},
                             "subject": {"reference": f"Patient/{site.patient_id}"}})
        created = site.services.router.handle(FhirRequest("POST", "Flag", body=body))
        assert created.status == 201, created.content()
    alerts = re.search(r'<p class="alert-flag".*?</p>',
                       doctor.get(f"/patients/{site.patient_id}").text, re.S)
    assert alerts and "Falls risk" in alerts.group(0)
    assert "Resolved sepsis alert" not in alerts.group(0)


def test_vital_signs_are_checked_before_saving(site: Site, doctor: TestClient) -> None:
    before = site.services.store.count(SearchQuery("Observation"))
    url = f"/patients/{site.patient_id}/new/vitals"
    page = doctor.post(url, data={"csrf_token": doctor.cookies["ma_csrf"],
                                  "when": "2020-01-01T10:00", "systolic": "80",
                                  "diastolic": "120", "heart_rate": "999", "spo2": "abc"})
    assert page.status_code == 422
    assert "Diastolic pressure must be below systolic." in page.text
    assert "Enter a value between 20 and 250." in page.text
    assert "Enter a number." in page.text
    assert 'aria-invalid="true"' in page.text
    assert site.services.store.count(SearchQuery("Observation")) == before


def test_vital_signs_saved_through_the_service_path_appear_on_the_chart(
        site: Site, doctor: TestClient) -> None:
    transactions = audit_count(site, "doctor", "transaction")
    responses = site.services.store.count(SearchQuery("QuestionnaireResponse"))
    site.clock.advance(1)  # later than any response saved before: it sorts first below
    when = site.clock().strftime("%Y-%m-%dT%H:%M")
    page = doctor.post(f"/patients/{site.patient_id}/new/vitals", data={
        "csrf_token": doctor.cookies["ma_csrf"], "when": when, "heart_rate": "143",
        "systolic": "181", "diastolic": "97"})
    assert page.url.path == f"/patients/{site.patient_id}" and 'id="saved"' in page.text
    latest = re.search(r'<table class="latest" id="latest-vitals">.*?</table>', page.text, re.S)
    assert latest and "143 beats/minute" in latest.group(0) and "181 mmHg" in latest.group(0)
    # the response and its two Observations: one transaction, one AuditEvent
    assert audit_count(site, "doctor", "transaction") == transactions + 1
    assert site.services.store.count(SearchQuery("QuestionnaireResponse")) == responses + 1
    stored = fhir_search(site, "QuestionnaireResponse", subject=f"Patient/{site.patient_id}",
                         _sort="-_lastUpdated", _count="1")[0]
    assert stored["questionnaire"].startswith(
        "https://medarchive.example/fhir/Questionnaire/vital-signs|")
    observations = fhir_search(site, "Observation",
                               **{"derived-from": f"QuestionnaireResponse/{stored['id']}"})
    assert sorted(o["code"]["coding"][0]["code"] for o in observations) == ["85354-9",
                                                                            "8867-4"]


def test_the_questionnaires_are_in_the_store_under_their_canonical_urls(site: Site) -> None:
    for kind in KINDS:
        packaged = questionnaire(kind)
        found = fhir_search(site, "Questionnaire", url=packaged["url"])
        assert [q["version"] for q in found] == [packaged["version"]]


def test_questionnaire_forms_are_drawn_from_their_items(site: Site,
                                                        doctor: TestClient) -> None:
    page = doctor.get(f"/patients/{site.patient_id}/new/problem").text
    assert re.search(r'<input id="problem" name="problem" type="text"[^>]*required[^>]*'
                     r'maxlength="200"', page)
    assert '<option value="active" selected>active</option>' in page
    assert 'data-enable-when="[[&#34;clinical_status&#34;, &#34;resolved&#34;]]"' in page
    vitals = doctor.get(f"/patients/{site.patient_id}/new/vitals").text
    assert re.search(r'id="heart_rate"[^>]*type="number"[^>]*min="20" max="250" step="1"',
                     vitals)
    assert "<legend>Blood pressure (mmHg)</legend>" in vitals
    chinese = doctor.get(f"/patients/{site.patient_id}/new/allergy",
                         headers={"accept-language": "zh-CN"}).text
    assert ">过敏原</label>" in chinese and "例如：皮疹。" in chinese  # noqa: RUF001


def test_every_form_saves(site: Site, doctor: TestClient) -> None:
    when = site.clock().strftime("%Y-%m-%dT%H:%M")
    forms = {"problem": {"problem": "Asthma", "clinical_status": "active"},
             "allergy": {"substance": "Penicillin", "criticality": "high"},
             "medication": {"medication": "Amoxicillin 500 mg", "dosage": "three times daily"},
             "note": {"title": "Ward round", "text": "Comfortable overnight."},
             "admission": {"start": when, "reason": "Pneumonia", "ward": "B2"}}
    for kind, fields in forms.items():
        page = doctor.post(f"/patients/{site.patient_id}/new/{kind}",
                           data={"csrf_token": doctor.cookies["ma_csrf"], **fields})
        assert page.status_code == 200 and 'id="saved"' in page.text, (kind, page.text[:500])
    chart = doctor.get(f"/patients/{site.patient_id}").text
    for text in ("Asthma", "Penicillin", "Amoxicillin 500 mg", "Ward round",
                 "Comfortable overnight.", "inpatient encounter"):
        assert text in chart
    refused = doctor.post(f"/patients/{site.patient_id}/new/problem", data={
        "csrf_token": doctor.cookies["ma_csrf"], "problem": "Gout",
        "clinical_status": "resolved", "onset": "2025-03-01", "abatement": "2025-02-01"})
    assert refused.status_code == 422
    assert "The problem cannot be resolved before its onset." in refused.text


def test_chinese_from_the_browser_and_by_choice(client: TestClient) -> None:
    page = client.get("/login", headers={"accept-language": "zh-CN,zh;q=0.9,en;q=0.5"})
    assert '<html lang="zh-Hans">' in page.text and "登录" in page.text
    client.post("/language", data={"language": "en", "next": "/login",
                                   "csrf_token": client.cookies["ma_csrf"]})
    again = client.get("/login", headers={"accept-language": "zh-CN"})
    assert '<html lang="en">' in again.text


def test_admin_pages_follow_roles(site: Site, client: TestClient) -> None:
    site.login(client, "doctor")
    assert client.get("/admin").status_code == 403
    assert client.get("/admin/audit").status_code == 403
    saved = client.post(f"/patients/{site.patient_id}/new/note", data={
        "csrf_token": client.cookies["ma_csrf"], "title": "Admin check", "text": "Seen."})
    assert 'id="saved"' in saved.text  # so the trail below has a create by the doctor
    client.post("/logout", data={"csrf_token": client.cookies["ma_csrf"]})
    site.login(client, "admin")
    dashboard = client.get("/admin")
    assert dashboard.status_code == 200 and "<svg" in dashboard.text
    users = client.get("/admin/users")
    assert "doctor" in users.text and "physician" in users.text
    assert client.get("/admin/audit").status_code == 403  # the policy: auditors only
    client.post("/logout", data={"csrf_token": client.cookies["ma_csrf"]})
    site.login(client, "audit")
    trail = client.get("/admin/audit", params={"user": "doctor", "action": "create"})
    assert trail.status_code == 200
    rows = re.findall(r"<tr><td>\d+</td>.*?</tr>", trail.text, re.S)
    assert rows and all("doctor" in row and "create" in row for row in rows)
    assert client.get("/admin/break-glass").status_code == 200


def test_with_authentication_off_the_ui_says_so_and_needs_no_login() -> None:
    from medarchive.app import create_app
    from medarchive.settings import Settings

    app = create_app(Settings(database_url="memory://", base_url="http://testserver",
                              auth="off"))
    app.state.services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1", "name": [{"family": "Hall"}]},
         "request": {"method": "PUT", "url": "Patient/p1"}}]})
    client = TestClient(app)
    page = client.get("/", params={"q": "Hal"})
    assert "Authentication is off" in page.text and 'href="/patients/p1"' in page.text
    assert client.get("/patients/p1").status_code == 200
    assert client.get("/login").url.path == "/"
    app.state.services.close()


def test_language_change_only_returns_to_this_site(client: TestClient) -> None:
    client.get("/login")
    for target in ("//evil.example/", "/\\evil.example", "https://evil.example/"):
        response = client.post("/language", follow_redirects=False, data={
            "language": "zh", "next": target, "csrf_token": client.cookies["ma_csrf"]})
        assert response.status_code == 303 and response.headers["location"] == "/", target
