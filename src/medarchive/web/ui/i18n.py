"""English and Simplified Chinese for the web UI: Babel message catalogues and locale choice.

The ``.po`` catalogues are committed under ``locale/`` and compiled in memory when the app
starts (``babel.messages``: read_po, write_mo), so no build step is needed and no binary
``.mo`` file is committed. The user's choice (a cookie) wins; otherwise the browser's
Accept-Language (RFC 9110 §12.5.4) picks; English is the fallback.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from babel.core import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations

LOCALE_DIR = Path(__file__).parent / "locale"
LANGUAGES = {"en": "English", "zh": "简体中文"}
HTML_LANG = {"en": "en", "zh": "zh-Hans"}
CATALOGUE = {"zh": "zh_Hans_CN"}
COOKIE = "ma_lang"


def N_(message: str) -> str:
    """Marks ``message`` for extraction (``pybabel extract -k N_``); translated where shown."""
    return message


# Codes shown to users through ``_(code)``: roles, genders and statuses of FHIR resources.
CODE_WORDS = (N_("administrator"), N_("physician"), N_("nurse"), N_("pharmacist"),
              N_("records_clerk"), N_("researcher"), N_("auditor"), N_("patient"), N_("male"),
              N_("female"), N_("other"), N_("unknown"), N_("active"), N_("resolved"),
              N_("inactive"), N_("finished"), N_("in-progress"), N_("planned"), N_("cancelled"),
              N_("completed"), N_("stopped"), N_("on-hold"), N_("draft"), N_("entered-in-error"),
              N_("low"), N_("high"), N_("unable-to-assess"), N_("Patient"), N_("Encounter"),
              N_("Observation"), N_("Condition"), N_("MedicationRequest"),
              N_("AllergyIntolerance"), N_("DocumentReference"), N_("ImagingStudy"),
              N_("Wrong user name, password or code, or the account is locked."),
              N_("Too many failed attempts; try again later."))


@dataclass(frozen=True, slots=True)
class Language:
    """The language of one response: code (``en``/``zh``), ``lang`` attribute, gettext."""

    code: str
    html_lang: str
    translations: NullTranslations

    def gettext(self, message: str) -> str:
        return self.translations.gettext(message) if message.strip() else message

    def ngettext(self, singular: str, plural: str, n: int) -> str:
        return self.translations.ngettext(singular, plural, n)


@cache
def translations(code: str) -> NullTranslations:
    """The compiled catalogue of ``code`` (English: the source strings themselves)."""
    folder = CATALOGUE.get(code)
    if folder is None:
        return NullTranslations()
    with (LOCALE_DIR / folder / "LC_MESSAGES" / "messages.po").open("rb") as po:
        catalog = read_po(po, locale=Locale.parse(folder))
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


def parse_accept_language(header: str | None) -> list[str]:
    """Language tags of an Accept-Language header, best first (RFC 9110 §12.5.4); q=0 and
    malformed weights are dropped."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate((header or "").split(",")):
        pieces = part.strip().split(";")
        tag = pieces[0].strip().lower()
        if not tag:
            continue
        weight = 1.0
        for param in pieces[1:]:
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if weight > 0:
            ranked.append((-weight, position, tag))
    return [tag for _, _, tag in sorted(ranked)]


def choose(cookie: str | None, accept_language: str | None) -> Language:
    """The language for a request: the user's cookie, else the browser's first supported."""
    code = cookie if cookie in LANGUAGES else None
    if code is None:
        for tag in parse_accept_language(accept_language):
            primary = tag.split("-")[0]
            if primary in LANGUAGES or tag == "*":
                code = "en" if tag == "*" else primary
                break
    code = code or "en"
    return Language(code, HTML_LANG[code], translations(code))
