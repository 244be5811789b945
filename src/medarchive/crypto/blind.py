"""Keyed blind indexes: searchable values that identify a patient, stored as HMACs.

The search index must answer ``Patient?family=smi`` without holding "Smith". For the resource
types that describe a person in the patient's circle (``BLIND_TYPES``) these index rows are
replaced, never kept beside the plaintext:

- every string row (names, address parts, ``_content``/``_text`` words, ``:text`` rows): one
  row whose value is the text's prefix chain: for each of its first 1 to ``MAX_PREFIX``
  normalised characters, ``HMAC(key, "c" | param | prefix)`` truncated to 48 bits (8 base64url
  characters), concatenated. The chain of a prefix is a prefix of the chain of every text that
  starts with it, so a prefix search is one range scan of the index, as on plaintext, and a
  text costs one row, as on plaintext (no longer one row per prefix). The row also carries
  ``HMAC("e" | param | exact text)`` for ``:exact``. A row that a parameter covering this one
  holds as well (``family``'s for ``name``, ``crypto.covering``) is left out, and the search
  reads that parameter's rows too;
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
``MAX_PREFIX``. HMAC-SHA256 (RFC 2104); token, date and exact digests are truncated to 128 bits,
base64url (22 characters), chain links to 48 bits (a search for a prefix of L characters
matches another stored prefix only if L' >= 1 links of 48 bits all collide: below 10^-6
false matches per search in a database of 10^8 texts). What the chain reveals is what one row
per prefix revealed: which texts share a prefix of which length, and each text's length.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from medarchive.crypto.covering import CONTENT, covering
from medarchive.fhir.search.dates import date_range
from medarchive.fhir.search.entries import IndexEntries, StringEntry, TokenEntry

BLIND_TYPES = frozenset({"Patient", "Person", "RelatedPerson"})
BLIND_TOKENS = frozenset({"identifier", "identifier:of-type", "telecom", "phone", "email"})
BLIND_DATES = frozenset({"birthdate"})
MAX_PREFIX = 64
DIGEST_CHARS = 22  # a token, date or exact digest: 128 bits, base64url
LINK = 6  # bytes of HMAC per character in a prefix chain: 8 base64url characters
DIGEST_CACHE = 65536  # digests remembered per key (about 10 MB when full)
PREFIX_CACHE = 16384  # texts whose prefix chains are remembered (about 10 MB when full)
_NONE: Mapping[str, tuple[str, ...]] = MappingProxyType({})
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
        self._spec: Any = None
        self._covers: dict[str, Mapping[str, tuple[str, ...]]] = {}
        # Keyed once; each digest continues a copy, and the prefixes of one text extend one
        # HMAC a character at a time instead of hashing each from the start.
        self._hmac = hmac.new(key, digestmod=hashlib.sha256)
        # Prefixes of names and words, codes and systems repeat across resources: remembered
        # (per instance, so per key), a write blinds each of them once per process.
        self._remembered = lru_cache(maxsize=DIGEST_CACHE)(self._digest)
        self._chains = lru_cache(maxsize=PREFIX_CACHE)(self._chain)

    def cover(self, spec: Any) -> None:
        """Leave out the rows that parameters covering theirs hold, and let searches read
        those (``crypto.covering``; the parameters of ``spec``)."""
        self._spec = spec
        self._covers = {}

    def covering(self, resource_type: str) -> Mapping[str, tuple[str, ...]]:
        """param -> the parameters whose rows a search on it also reads (none before
        ``cover``)."""
        found = self._covers.get(resource_type)
        if found is None:
            found = _NONE if self._spec is None else covering(self._spec, resource_type)
            self._covers[resource_type] = found
        return found

    def digest(self, kind: str, param: str, value: str) -> str:
        """``HMAC(key, kind | param | value)``, truncated to 128 bits, base64url."""
        return self._remembered(kind, param, value)

    def _digest(self, kind: str, param: str, value: str) -> str:
        mac = self._hmac.copy()
        mac.update(f"{kind}\x1f{param}\x1f{value}".encode())
        return _text(mac.digest())

    def chain(self, param: str, text: str) -> str:
        """The prefix chain of ``text``'s first ``max_prefix`` characters: what a text's row
        stores, and what a prefix search looks for the start of."""
        return self._chains(param, text[:self.max_prefix])

    def _chain(self, param: str, text: str) -> str:
        mac = self._hmac.copy()
        mac.update(f"c\x1f{param}\x1f".encode())
        links = []
        for char in text:
            mac.update(char.encode())
            links.append(mac.digest()[:LINK])  # digest() leaves the HMAC open for more
        return base64.urlsafe_b64encode(b"".join(links)).decode()

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
        for entry in _uncovered(found.strings, self.covering(resource_type)):
            chain = self.chain(entry.param, entry.value)
            if chain:
                row = StringEntry(entry.param, chain, self.exact(entry.param, entry.exact))
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


def _text(mac: bytes) -> str:
    """An HMAC truncated to 128 bits, as 22 base64url characters."""
    return base64.urlsafe_b64encode(mac[:16]).decode()[:DIGEST_CHARS]


def _uncovered(strings: Sequence[StringEntry], covers: Mapping[str, tuple[str, ...]]
               ) -> Sequence[StringEntry]:
    """``strings`` without the rows a parameter covering theirs holds (``crypto.covering``):
    the same text, normalised and as written; for ``_content``, a word equal to the text."""
    if not covers:
        return strings
    held: dict[str, set[tuple[str, str]]] = {}
    for entry in strings:
        held.setdefault(entry.param, set()).add((entry.value, entry.exact))
    if not any(param in held for param in covers):
        return strings
    words = {value for q in covers.get(CONTENT, ()) for value, _ in held.get(q, ())}
    kept = []
    for entry in strings:
        sources = covers.get(entry.param)
        if sources:
            if entry.param == CONTENT:
                if entry.value in words:
                    continue
            elif any((entry.value, entry.exact) in held.get(q, ()) for q in sources):
                continue
        kept.append(entry)
    return kept
