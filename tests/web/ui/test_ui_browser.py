"""End to end in Debian's Chromium through Playwright: log in, find a patient, open the chart,
enter vital signs, see them on the chart, log out, at phone (360 px) and desktop (1366 px)
widths, with screenshots kept in test-artifacts/ui/; no sideways scrolling at 360 px on any
main page; every other data-entry form (refused when empty, then saved and shown on the chart);
the administrator's and auditor's pages; and accessibility: axe-core (axe-playwright-python)
on the main pages, failing on any serious or critical WCAG 2.1 A/AA violation, plus checks of
our own (labels, lang, heading order, theme contrast, focus order). Without /usr/bin/chromium,
the playwright package or axe-playwright-python these skip (and fail in CI)."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
WIDTHS = {"phone": (360, 740), "desktop": (1366, 900)}
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture(scope="module")
def browser(need: Any) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need("playwright is not installed (pip install playwright, a dev extra)")
    if not os.access(CHROMIUM, os.X_OK):
        need(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM,
                                              args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


def log_in(page: Any, base: str, site: Any, username: str = "doctor") -> None:
    page.goto(base + "/")
    assert page.url.endswith("/login")
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(site.password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(base + "/")


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_find_chart_record_vitals_and_log_out(browser: Any, served: str, site: Any,
                                              artifacts: Path, width: str) -> None:
    w, h = WIDTHS[width]
    context = browser.new_context(viewport={"width": w, "height": h}, locale="en-GB")
    page = context.new_page()
    log_in(page, served, site)
    assert page.locator(".role").inner_text() == "physician"
    typo = site.family[:-1] + ("a" if site.family[-1] != "a" else "e")
    page.get_by_label("Name or identifier").fill(typo)
    page.get_by_role("button", name="Search").click()
    page.locator(f'a[href="/patients/{site.patient_id}"]').click()
    page.wait_for_url(f"{served}/patients/{site.patient_id}")
    assert page.locator("h1").inner_text().strip()
    page.screenshot(path=str(artifacts / f"chart-{width}.png"), full_page=False)
    site.clock.advance(60)  # this measurement is the newest one
    page.locator("#new-vitals").click()
    # checked in the browser first: nothing is sent while a field is out of range
    page.get_by_label("Heart rate (/min)").fill("400")
    page.locator("#save").click()
    assert page.url.endswith("/new/vitals")
    assert page.locator("#heart_rate").get_attribute("aria-invalid") == "true"
    heart = "131" if width == "phone" else "132"
    page.get_by_label("Heart rate (/min)").fill(heart)
    page.get_by_label("Systolic").fill("150")
    page.get_by_label("Diastolic").fill("95")
    page.screenshot(path=str(artifacts / f"vitals-form-{width}.png"))
    page.locator("#save").click()
    page.wait_for_url(f"{served}/patients/{site.patient_id}?saved=vitals#vitals")
    assert page.locator("#saved").is_visible()
    latest = page.locator("#latest-vitals").inner_text()
    assert f"{heart} beats/minute" in latest and "150 mmHg" in latest
    page.screenshot(path=str(artifacts / f"chart-saved-{width}.png"))
    assert page.evaluate("document.documentElement.scrollWidth") <= w + 1  # no sideways scroll
    page.locator("#logout").click()
    page.wait_for_url(f"{served}/login?bye=1")
    page.goto(f"{served}/patients/{site.patient_id}")
    assert page.url.endswith("/login")
    context.close()


LABELS_JS = """() => [...document.querySelectorAll('input, select, textarea')]
  .filter(e => e.type !== 'hidden')
  .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
  .map(e => e.name || e.id)"""
HEADINGS_JS = """() => [...document.querySelectorAll('h1,h2,h3,h4,h5,h6')]
  .map(h => Number(h.tagName[1]))"""
FOCUS_JS = """() => { const e = document.activeElement;
  const r = e.getBoundingClientRect(); const s = getComputedStyle(e);
  return {tag: e.tagName, id: e.id, text: (e.innerText || e.value || '').slice(0, 30),
          visible: r.width > 0 && r.height > 0, outline: s.outlineStyle !== 'none'
            || s.boxShadow !== 'none'}; }"""
COLOURS_JS = """() => { const s = getComputedStyle(document.documentElement);
  const v = n => s.getPropertyValue(n).trim();
  return [['--ink', '--paper'], ['--muted', '--paper'], ['--primary', '--paper'],
          ['--primary-ink', '--primary'], ['--danger', '--paper'], ['--danger', '--danger-bg'],
          ['--ok', '--ok-bg'], ['--ink', '--page'], ['--muted', '--page'],
          ['--ink', '--warn-bg']].map(([f, b]) => [f, b, v(f), v(b)]); }"""


def luminance(colour: str) -> float:
    """WCAG 2.1 relative luminance of a #rrggbb colour."""
    value = colour.lstrip("#")
    channels = [int(value[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    """WCAG 2.1 contrast ratio (success criterion 1.4.3)."""
    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_contrast_formula() -> None:
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert contrast("#777777", "#ffffff") < 4.5 < contrast("#595959", "#ffffff")


def main_pages(served: str, site: Any) -> dict[str, list[str]]:
    """The main pages by the user who sees them (login: nobody)."""
    chart = f"{served}/patients/{site.patient_id}"
    return {"": [served + "/login"],
            "admin": [served + "/?q=" + site.family, chart, f"{chart}/new/vitals",
                      f"{chart}/new/problem", f"{chart}/new/note", served + "/admin",
                      served + "/admin/users"],
            "audit": [served + "/admin/audit", served + "/admin/break-glass"]}


def visit_main_pages(browser: Any, served: str, site: Any, viewport: dict[str, int]
                     ) -> Iterator[tuple[Any, str]]:
    """Each main page open in turn, logged in as the user who may see it."""
    context = browser.new_context(viewport=viewport, locale="en-GB")
    page = context.new_page()
    for user, urls in main_pages(served, site).items():
        if user:
            log_in(page, served, site, user)
        for url in urls:
            page.goto(url)
            yield page, url
        if user:
            page.locator("#logout").click()
            page.wait_for_url(f"{served}/login?bye=1")
    context.close()


@pytest.fixture(scope="module")
def axe(need: Any) -> Any:
    try:
        from axe_playwright_python.sync_playwright import Axe
    except ImportError:
        need("axe-playwright-python is not installed (pip install axe-playwright-python)")
    return Axe()


def test_axe_finds_no_serious_violations(browser: Any, served: str, site: Any,
                                         axe: Any) -> None:
    """axe-core's WCAG 2.1 A and AA rules on every main page, at desktop and phone widths."""
    for width in sorted(WIDTHS):
        w, h = WIDTHS[width]
        for page, url in visit_main_pages(browser, served, site, {"width": w, "height": h}):
            results = axe.run(page, options={"runOnly": {"type": "tag", "values": WCAG}})
            serious = [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:5])
                       for v in results.response["violations"]
                       if v["impact"] in ("serious", "critical")]
            assert serious == [], (width, url, serious)


def test_no_sideways_scrolling_at_360_px(browser: Any, served: str, site: Any,
                                         artifacts: Path) -> None:
    for page, url in visit_main_pages(browser, served, site, {"width": 360, "height": 740}):
        assert page.evaluate("document.documentElement.scrollWidth") <= 360, url
        path = url.split("/", 3)[-1].split("?")[0].replace(f"patients/{site.patient_id}", "chart")
        name = path.replace("/", "-") or "search"
        page.screenshot(path=str(artifacts / f"phone-{name}.png"), full_page=True)


def test_main_pages_are_accessible(browser: Any, served: str, site: Any) -> None:
    for page, url in visit_main_pages(browser, served, site, {"width": 1366, "height": 900}):
        assert page.evaluate("document.documentElement.lang") in ("en", "zh-Hans"), url
        assert page.title().strip(), url
        assert page.evaluate(LABELS_JS) == [], url
        levels = page.evaluate(HEADINGS_JS)
        assert levels and levels[0] == 1 and levels.count(1) == 1, (url, levels)
        assert all(b - a <= 1 for a, b in itertools.pairwise(levels)), (url, levels)
        assert page.locator("img:not([alt])").count() == 0, url
        for fore, back, a, b in page.evaluate(COLOURS_JS):
            assert contrast(a, b) >= 4.5, (fore, back, a, b)
    # focus order: the skip link first, then the header's links and controls, then the page
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    log_in(page, served, site, "admin")
    page.goto(f"{served}/patients/{site.patient_id}")
    order = []
    for _ in range(12):
        page.keyboard.press("Tab")
        order.append(page.evaluate(FOCUS_JS))
        if order[-1]["id"] == "new-vitals":
            break
    assert order[0]["text"].startswith("Skip to content"), order
    assert all(item["visible"] and item["outline"] for item in order), order
    ids = [item["id"] for item in order]
    assert ids.index("language") < ids.index("logout") < ids.index("new-vitals"), ids
    context.close()


def test_chinese_pages(browser: Any, served: str, site: Any) -> None:
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    page.goto(served + "/login")
    assert page.evaluate("document.documentElement.lang") == "zh-Hans"
    assert page.locator("h1").inner_text() == "登录"
    page.get_by_label("用户名").fill("doctor")
    page.get_by_label("密码").fill(site.password)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(served + "/")
    assert page.locator(".role").inner_text() == "医生"
    with page.expect_navigation():
        page.select_option("#language", "en")  # applies at once (ui.js)
    assert page.locator("h1").inner_text() == "Find a patient"
    context.close()


ENTRIES = {  # form: (fields by id, text the chart shows afterwards)
    "admission": ({"reason": "Chest pain for observation", "ward": "Ward 7"},
                  "Chest pain for observation"),
    "problem": ({"problem": "Gout of the left foot"}, "Gout of the left foot"),
    "allergy": ({"substance": "Latex gloves", "reaction": "Hives"}, "Latex gloves"),
    "medication": ({"medication": "Colchicine 500 micrograms", "dosage": "twice daily"},
                   "Colchicine 500 micrograms"),
    "note": ({"title": "Ward round, day 2", "text": "Comfortable overnight."},
             "Ward round, day 2"),
}


def test_every_data_entry_form_saves_and_shows_on_the_chart(browser: Any, served: str,
                                                            site: Any) -> None:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    log_in(page, served, site)
    chart = f"{served}/patients/{site.patient_id}"
    for form, (fields, shown) in ENTRIES.items():
        page.goto(f"{chart}/new/{form}")
        first = next(iter(fields))
        page.fill(f"#{first}", "")
        page.locator("#save").click()  # an empty required field: refused in the browser
        assert page.url.endswith(f"/new/{form}"), form
        for name, value in fields.items():
            page.fill(f"#{name}", value)
        if form == "problem":  # Questionnaire enableWhen: a resolution date when resolved
            assert not page.locator("#abatement").is_visible()
            page.select_option("#clinical_status", "resolved")
            page.fill("#onset", "2026-01-10")
            page.fill("#abatement", "2026-02-20")
        if form == "admission":
            page.fill("#start", "2026-11-27T08:30")
        page.locator("#save").click()
        page.wait_for_url(f"{chart}?saved={form}*")
        assert page.locator("#saved").is_visible(), form
        assert shown in page.locator("main").inner_text(), form
    context.close()


def test_admin_pages_for_administrator_and_auditor(browser: Any, served: str,
                                                   site: Any) -> None:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    log_in(page, served, site, "admin")
    page.goto(served + "/admin")
    assert page.locator("h1").inner_text() == "Dashboard"
    assert page.locator("svg").count() >= 1  # the admissions-per-day chart
    page.goto(served + "/admin/users")
    users = page.locator("#users").inner_text()
    assert "doctor" in users and "physician" in users
    page.goto(served + "/admin/audit")  # the trail is the auditors' alone
    assert "this page is for: auditor" in page.locator("main").inner_text()
    page.locator("#logout").click()
    page.wait_for_url(f"{served}/login?bye=1")
    log_in(page, served, site, "audit")
    page.goto(served + "/admin/audit")
    page.select_option("#f-action", "110122")  # logins only
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**/admin/audit?*action=110122*")
    assert page.locator("#audit tbody tr").count() >= 1
    assert "admin" in page.locator("#audit").inner_text()
    page.goto(served + "/admin/break-glass")
    assert page.locator("h1").inner_text() == "Break-the-glass grants"
    assert page.locator("#grants").count() == 1
    context.close()
