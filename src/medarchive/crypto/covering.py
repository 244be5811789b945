"""Blinded string parameters whose rows other parameters already hold ("covering").

Every blind-index row is a random key in the search index: a Patient's registration writes one
(a prefix chain, ``crypto.blind``) for every name, address and full-text word, and each of them
costs the commit an index page. Several official R4 string parameters of the blinded types
hold rows another parameter holds too:

- ``name`` (``Patient.name``: every part of a name) holds the rows of ``family``
  (``Patient.name.family``) and ``given``; ``address`` those of ``address-city``,
  ``address-state``, ``address-postalcode`` and ``address-country``;
- ``phonetic`` has the same expression as ``name`` (MedArchive matches it like ``name``), so
  it holds exactly ``name``'s rows;
- ``_content`` holds a row for every word of the human-readable texts, so the row of a
  one-word name, city, state or country.

Parameter Q *covers* P when Q's values are always among P's: every branch of Q's expression is a
branch of P's, or one of its parts (``.family``, ``.given``, ``.text``, an address part), where
R4 string search matches the parts of a HumanName or Address (``fhir.search.extract.strings``);
of two parameters with the same expression, only the one first in alphabetical order covers
(the other keeps no rows of its own). Q covers ``_content`` when Q's values are human-readable
texts (``fhir.search.text``): simple paths whose last step is a human-readable element.

``BlindIndex.entries`` leaves out a blind row of P when a parameter covering P has the same
row (the same text, normalised and as written; for ``_content``, a word equal to a covering
value), and a search on P reads its own rows and those of every parameter covering it,
transitively (``covering``): exactly the resources P's full rows would find. Rows written
before covering are still read, so no reindex is needed. Only official R4 parameters take
part, as for union parameters (``fhir.search.unions``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from medarchive.fhir.search.text import HUMAN, SKIPPED
from medarchive.fhir.search.unions import OFFICIAL
from medarchive.fhir.spec.expressions import split_union

__all__ = ["CONTENT", "covering"]

CONTENT = "_content"
_PARTS = frozenset({"family", "given", "text", "line", "city", "district", "state",
                    "postalCode", "country"})
_PATH = re.compile(r"[A-Za-z]+(\.[A-Za-z]+)+")
_CACHE: dict[tuple[Any, ...], Mapping[str, tuple[str, ...]]] = {}


def covering(spec: Any, resource_type: str) -> Mapping[str, tuple[str, ...]]:
    """param -> every parameter covering it, transitively (nearest first), for the official
    string parameters of ``resource_type`` (and ``_content``)."""
    try:
        params = spec.search_params(resource_type)
    except KeyError:
        return MappingProxyType({})
    official = tuple(sorted(
        (code, p.expression) for code, p in params.items()
        if p.type == "string" and p.expression and p.url.startswith(OFFICIAL)
        and all(_PATH.fullmatch(b) for b in split_union(p.expression))))
    key = (resource_type, official)
    found = _CACHE.get(key)
    if found is None:
        found = _CACHE[key] = MappingProxyType(_closure(_direct(official)))
    return found


def _direct(official: tuple[tuple[str, str], ...]) -> dict[str, list[str]]:
    branches = {code: frozenset(split_union(expression)) for code, expression in official}
    # Of two parameters with the same expression only the first in order keeps rows (the
    # other's are all left out), so only the first covers anything.
    twins = {code for code, mine in branches.items()
             if any(other < code and theirs == mine for other, theirs in branches.items())}
    direct: dict[str, list[str]] = {}
    for code, mine in branches.items():
        parts = {f"{branch}.{part}" for branch in mine for part in _PARTS}
        direct[code] = [other for other, theirs in branches.items()
                        if other != code and other not in twins and theirs <= mine | parts]
    direct[CONTENT] = [code for code, mine in branches.items()
                       if code not in twins and all(map(_human, mine))]
    return direct


def _human(branch: str) -> bool:
    """Whether every value of a simple path is among the resource's ``_content`` texts."""
    steps = branch.split(".")[1:]
    return steps[-1] in HUMAN and not any(step in SKIPPED or step == "text"
                                          for step in steps[:-1])


def _closure(direct: dict[str, list[str]]) -> dict[str, tuple[str, ...]]:
    closed: dict[str, tuple[str, ...]] = {}
    for code in direct:
        seen: dict[str, None] = {}
        queue = list(direct[code])
        while queue:
            other = queue.pop(0)
            if other != code and other not in seen:
                seen[other] = None
                queue += direct.get(other, [])
        if seen:
            closed[code] = tuple(seen)
    return closed
