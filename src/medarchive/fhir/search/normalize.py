"""How string search values are normalised, identically at index time and at query time.

R4 Search §3.1.1.5.8 "string": matching is case- and accent-insensitive by default, so both
sides are case-folded, stripped of combining marks (after NFKD decomposition) and have their
whitespace collapsed. Scripts without case or accents (e.g. Chinese) pass through unchanged.
Short texts (codes' displays, names) recur across resources and are remembered.
"""

from __future__ import annotations

import functools
import unicodedata

SHORT = 200  # texts up to this length are cached; a narrative is not


def normalize_string(text: str) -> str:
    if len(text) <= SHORT:
        return _normalize_short(text)
    return _normalize(text)


def _normalize(text: str) -> str:
    if text.isascii():  # no accents to strip: the common case, several times cheaper
        return " ".join(text.lower().split())
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(stripped.casefold().split())


_normalize_short = functools.lru_cache(maxsize=16384)(_normalize)
