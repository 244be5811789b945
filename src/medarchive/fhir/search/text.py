"""Words for the full-text searches ``_text`` and ``_content``.

R4 Search §3.1.1.5.14 / §3.1.1.4 leave full-text matching to the server. MedArchive keeps it
portable and identical on every backend: text is cut into words (letters and digits, normalised
like string search: case-folded, accents removed), each distinct word becomes one index row, and
a searched phrase matches when every one of its words is the start of some indexed word. So
``_content=heart fail`` finds "Heart failure", on SQLite, PostgreSQL and in memory alike.

``_text`` indexes the narrative (``Resource.text.div`` without its markup). ``_content`` indexes
the narrative plus the human-readable text of the resource: every string under one of the
``HUMAN`` element names (display, text, name parts, titles, descriptions, comments, string
values), which is what a person would search for; codes, ids, URLs and dates are left out.
"""

from __future__ import annotations

import functools
import html
import itertools
import re
from collections.abc import Iterable
from typing import Any

from medarchive.fhir.search.normalize import SHORT, normalize_string

MAX_WORDS = 256  # per resource and parameter: keeps one odd resource from bloating the index
_WORD = re.compile(r"\w+")
_TAG = re.compile(r"<[^>]*>")
HUMAN = frozenset({"display", "text", "family", "given", "prefix", "suffix", "title",
                    "description", "comment", "comments", "summary", "valueString",
                    "valueMarkdown", "name", "alias", "line", "city", "district", "state",
                    "country", "purpose", "note", "instruction", "patientInstruction",
                    "conclusion", "question", "answer", "label", "detail"})
SKIPPED = frozenset({"div", "contained", "extension", "modifierExtension"})


def words(text: str) -> list[str]:
    """The distinct normalised words of ``text``, in order of first appearance."""
    return list(_words(text))


def _words(text: str) -> tuple[str, ...]:
    if len(text) <= SHORT:
        return _short_words(text)
    return tuple(dict.fromkeys(_WORD.findall(normalize_string(text))))


@functools.lru_cache(maxsize=16384)  # displays and names recur across resources
def _short_words(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_WORD.findall(normalize_string(text))))


def narrative_text(resource: dict[str, Any]) -> str:
    """The plain text of the narrative ``text.div`` (markup and entities removed)."""
    narrative = resource.get("text")
    div = narrative.get("div") if isinstance(narrative, dict) else None
    if not isinstance(div, str):
        return ""
    return html.unescape(_TAG.sub(" ", div))


def _human_strings(value: dict[str, Any], out: list[str]) -> list[str]:
    """Append the human-readable strings under ``value`` to ``out`` (a Narrative, contained
    resources and extensions are left out)."""
    for name, item in value.items():
        if isinstance(item, str):
            if name in HUMAN:
                out.append(item)
        elif isinstance(item, list):
            if name not in SKIPPED:
                _human_items(item, name in HUMAN, out)
        elif isinstance(item, dict) and name not in SKIPPED and name != "text":
            _human_strings(item, out)  # not a Narrative (``text``), nor note.text's parent
    return out


def _human_items(items: list[Any], human: bool, out: list[str]) -> None:
    for item in items:
        if isinstance(item, str):
            if human:
                out.append(item)
        elif isinstance(item, list):
            _human_items(item, human, out)
        elif isinstance(item, dict):
            _human_strings(item, out)


def capped(found: Iterable[str]) -> list[str]:
    """Distinct words, at most ``MAX_WORDS`` of them."""
    return list(dict.fromkeys(found))[:MAX_WORDS]


def text_words(resource: dict[str, Any]) -> list[str]:
    """Words of ``_text``: the narrative."""
    return capped(words(narrative_text(resource)))


def content_words(resource: dict[str, Any]) -> list[str]:
    """Words of ``_content``: the narrative and the human-readable strings of the resource."""
    texts = dict.fromkeys(_human_strings(resource, []))  # a repeated text adds no word
    return capped(itertools.chain(_words(narrative_text(resource)), *map(_words, texts)))
