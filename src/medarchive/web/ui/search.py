"""Typo-tolerant patient search on top of FHIR Patient search.

The exact FHIR search runs first (``name`` is a prefix match, R4 §3.1.1.4.7 string;
``identifier`` a token; ``birthdate`` a date). When it finds few patients, a wider search by
the first two letters of each word fetches candidates, which are ranked by how close their
names are to what was typed: a similarity ratio (difflib) plus a bonus when the American
Soundex codes agree, so "Peres" finds Perez and "Jonson" finds Johnson.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

from medarchive.web.ui.chart import name_of
from medarchive.web.ui.clinic import Clinic

WIDE_LIMIT = 200
SHOWN = 50
IDENTIFIER = re.compile(r"^[0-9][0-9A-Za-z\-]*$")
SOUNDEX = {**dict.fromkeys("bfpv", "1"), **dict.fromkeys("cgjkqsxz", "2"),
           **dict.fromkeys("dt", "3"), "l": "4", **dict.fromkeys("mn", "5"), "r": "6"}


def soundex(word: str) -> str:
    """American Soundex (US National Archives): a letter and three digits; '' for no letters."""
    letters = [c for c in word.lower() if "a" <= c <= "z"]
    if not letters:
        return ""
    code, last = letters[0].upper(), SOUNDEX.get(letters[0], "")
    for c in letters[1:]:
        digit = SOUNDEX.get(c, "")
        if digit and digit != last:
            code += digit
        if c not in "hw":
            last = digit
    return (code + "000")[:4]


def name_words(patient: dict[str, Any]) -> list[str]:
    words = []
    for name in patient.get("name") or ():
        words += [w.lower() for w in [*name.get("given", []), name.get("family", "")] if w]
    return words or name_of(patient).lower().split()


def closeness(typed: str, patient: dict[str, Any]) -> float:
    """0..1: how well the typed words match the patient's name words (best word each)."""
    words = name_words(patient)
    wanted = typed.lower().split()
    if not wanted or not words:
        return 0.0
    total = 0.0
    for term in wanted:
        best = 0.0
        for word in words:
            score = SequenceMatcher(None, term, word).ratio()
            if word.startswith(term):
                score = max(score, 0.95)
            if soundex(term) and soundex(term) == soundex(word):
                score = max(score, 0.85)
            best = max(best, score)
        total += best
    return total / len(wanted)


@dataclass(frozen=True, slots=True)
class Found:
    patient: dict[str, Any]
    score: float


def find_patients(clinic: Clinic, text: str, birthdate: str = "") -> list[Found]:
    """Patients matching ``text`` (name words or an identifier) and ``birthdate``, best first."""
    text = " ".join(text.split())
    extra = [("birthdate", birthdate)] if birthdate else []
    if not text:
        return [Found(p, 1.0) for p in clinic.search("Patient", extra, limit=SHOWN)] \
            if extra else []
    if IDENTIFIER.match(text):
        found = clinic.search("Patient", [("identifier", text), *extra], limit=SHOWN)
        if found:
            return [Found(p, 1.0) for p in found]
    exact = clinic.search("Patient", [("name", w) for w in text.split()] + extra, limit=SHOWN)
    candidates = {p["id"]: p for p in exact}
    if len(exact) < 5:
        for word in text.split():
            if len(word) >= 2:
                for p in clinic.search("Patient", [("name", word[:2]), *extra],
                                       limit=WIDE_LIMIT):
                    candidates.setdefault(p["id"], p)
    ranked = [Found(p, closeness(text, p)) for p in candidates.values()]
    ranked = [f for f in ranked if f.score >= 0.7 or f.patient["id"] in
              {p["id"] for p in exact}]
    ranked.sort(key=lambda f: (-f.score, name_of(f.patient)))
    return ranked[:SHOWN]
