"""Keyed blind indexes: searchable values that identify a patient, stored as HMACs.

The search index must answer ``Patient?family=smi`` without holding "Smith". For the resource
types that describe a person in the patient's circle (``BLIND_TYPES``) these index rows are
replaced, never kept beside the plaintext:

- every string row (names, address parts, ``_content``/``_text`` words, ``:text`` rows): one
  row per normalised prefix, ``HMAC(key, "p" | param | prefix)``, for prefixes of 1 to
  ``MAX_PREFIX`` characters; the longest also carries ``HMAC("e" | param | exact text)`` for
  ``:exact``. A prefix search is then one equality lookup;
- token rows of ``BLIND_TOKENS`` (identifier values, phone numbers, e-mail addresses): the code
  becomes ``HMAC("t" | param | code)``; the system stays readable so ``system|`` still works.
  Identifiers are blinded on every resource type, not only these: a visit number or an
  accession number often embeds the patient's record number, and ``Reference.identifier``
  (``:identifier`` rows) often is one;
- date rows of ``BLIND_DATES`` (birth date): string rows ``HMAC("d" | param | form)`` for each
  calendar year, month and day that contains the stored range, so ``eq`` at year, month or day
  precision is one lookup.

What cannot be answered from an HMAC is refused with 400 (see ``refusal``): ``:contains``,
sorting on these parameters, date comparisons other than ``eq``, and prefixes longer than
``MAX_PREFIX``. HMAC-SHA256 (RFC 2104) truncated to 128 bits, base64url: 22 characters.
"""

from __future__ import annotations

import base64
import hmac
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from medarchive.fhir.search.dates import date_range
from medarchive.fhir.search.entries import IndexEntries, StringEntry, TokenEntry

BLIND_TYPES = frozenset({"Patient", "Person", "RelatedPerson"})
BLIND_TOKENS = frozenset({"identifier", "identifier:of-type", "telecom", "phone", "email"})
BLIND_DATES = frozenset({"birthdate"})
MAX_PREFIX = 64
DIGEST_CACHE = 65536  # digests remembered per key (about 10 MB when full)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def everywhere(kind: str, param: str) -> bool:
    """Whether ``param`` is blinded on every resource type (identifiers)."""
    return kind == "token" and (param in ("identifier", "identifier:of-type")
                                or param.endswith(":identifier"))


def blinded(resource_type: str | None, kind: str, param: str) -> bool:
    """Whether index rows of ``kind`` (string, text, token, date) for ``param`` of
    ``resource_type`` (None: of some type) are kept as blind indexes."""
    if everywhere(kind, param):
        return True
    if resource_type is None:
        return any(blinded(rtype, kind, param) for rtype in BLIND_TYPES)
    if resource_type not in BLIND_TYPES:
        return False
    if kind in ("string", "text"):
        return True
    if kind == "token":
        return param in BLIND_TOKENS
    return kind == "date" and param in BLIND_DATES


def _form_range(form: str) -> tuple[int, int]:
    return date_range(form)


def date_forms(low: int, high: int) -> list[str]:
    """The calendar year, month and day forms (``1990``, ``1990-06``, ``1990-06-06``) whose
    range contains the stored range [low, high]; with ``R<low>-<high>`` when it is none of
    them exactly (an instant or a period)."""
    start = _EPOCH + timedelta(microseconds=low)
    forms = []
    exact = False
    for form in (f"{start.year:04d}", f"{start.year:04d}-{start.month:02d}",
                 f"{start.year:04d}-{start.month:02d}-{start.day:02d}"):
        form_low, form_high = _form_range(form)
        if form_low <= low and high <= form_high:
            forms.append(form)
            exact = exact or (form_low, form_high) == (low, high)
    if not exact:
        forms.append(f"R{low}-{high}")
    return forms


def search_form(low: int, high: int) -> str:
    """The form an ``eq`` search range is looked up by: the calendar form it is exactly, or
    its ``R<low>-<high>``."""
    for form in date_forms(low, high):
        if not form.startswith("R") and _form_range(form) == (low, high):
            return form
    return f"R{low}-{high}"


class BlindIndex:
    """HMACs under the database's blind-index key (one key for the whole database, so a
    search can cross patients)."""

    def __init__(self, key: bytes, max_prefix: int = MAX_PREFIX) -> None:
        self._key = key
        self.max_prefix = max_prefix
        # Prefixes of names and words, codes and systems repeat across resources: remembered
        # (per instance, so per key), a write blinds each of them once per process.
        self._remembered = lru_cache(maxsize=DIGEST_CACHE)(self._digest)

    def digest(self, kind: str, param: str, value: str) -> str:
        """``HMAC(key, kind | param | value)``, truncated to 128 bits, base64url."""
        return self._remembered(kind, param, value)

    def _digest(self, kind: str, param: str, value: str) -> str:
        mac = hmac.digest(self._key, f"{kind}\x1f{param}\x1f{value}".encode(), "sha256")
        return base64.urlsafe_b64encode(mac[:16]).decode()[:22]

    def prefix(self, param: str, text: str) -> str:
        return self.digest("p", param, text)

    def exact(self, param: str, text: str) -> str:
        return self.digest("e", param, text)

    def code(self, param: str, code: str) -> str:
        return self.digest("t", param, code)

    def date(self, param: str, form: str) -> str:
        return self.digest("d", param, form)

    def entries(self, resource_type: str, found: IndexEntries) -> IndexEntries:
        """``found`` with its blinded rows replaced by their blind forms."""
        if resource_type not in BLIND_TYPES:
            if not any(everywhere("token", t.param) for t in found.tokens):
                return found
            tokens = tuple(TokenEntry(t.param, t.system, self.code(t.param, t.code), t.display)
                           if everywhere("token", t.param) and t.code is not None else t
                           for t in found.tokens)
            return IndexEntries(tokens=tokens, strings=found.strings,
                                references=found.references, dates=found.dates,
                                numbers=found.numbers, quantities=found.quantities,
                                uris=found.uris, params=found.params,
                                composites=found.composites)
        strings: dict[tuple[str, str, str], StringEntry] = {}
        for entry in found.strings:
            value = entry.value[:self.max_prefix]
            last = len(value)
            for size in range(1, last + 1):
                exact = self.exact(entry.param, entry.exact) if size == last else ""
                row = StringEntry(entry.param, self.prefix(entry.param, value[:size]), exact)
                strings[(row.param, row.value, row.exact)] = row
        dates = []
        for date in found.dates:
            if date.param not in BLIND_DATES:
                dates.append(date)
                continue
            for form in date_forms(date.low, date.high):
                row = StringEntry(date.param, self.date(date.param, form), "")
                strings[(row.param, row.value, row.exact)] = row
        tokens = tuple(
            TokenEntry(t.param, t.system, self.code(t.param, t.code), t.display)
            if (t.param in BLIND_TOKENS or everywhere("token", t.param)) and t.code is not None
            else t
            for t in found.tokens)
        return IndexEntries(tokens=tokens, strings=tuple(strings.values()),
                            references=found.references, dates=tuple(dates),
                            numbers=found.numbers, quantities=found.quantities,
                            uris=found.uris, params=found.params,
                            composites=found.composites)
