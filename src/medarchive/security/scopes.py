"""SMART on FHIR scopes, v1 and v2, parsed into what they permit.

SMART App Launch 2.0 §3.0 "Scopes and Launch Context": ``context/type.permissions`` where context
is ``patient``, ``user`` or ``system``, type a resource type or ``*``, and permissions either v1
``read``/``write``/``*`` or v2 letters from ``cruds`` in that order. v1 ``read`` means read and
search, ``write`` create, update and delete. A v2 scope may end in ``?param=value[&param=value]``
(§3.0.2 "Finer-grained resource constraints using search parameters"): it then grants its letters
only on the resources of its type that match that search. This module parses the text; which
parameters are supported, and what they match, is ``security.granular``'s business. A scope
whose query does not parse is no resource scope at all (it grants nothing), never a plain one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import quote, unquote

_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]{1,63})\.(read|write|\*|c?r?u?d?s?)"
                    r"(?:\?(.*))?$", re.DOTALL)
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_:.\-]{0,127}$")  # a search parameter (+modifier)
SAFE = "/:|,.-_~@!$'()*+;\\"  # kept as they are in a scope's query text; the rest %-escaped
V1 = {"read": frozenset("rs"), "write": frozenset("cud"), "*": frozenset("cruds")}
ALL = frozenset("cruds")


@dataclass(frozen=True, slots=True)
class Scope:
    """One resource scope: its context, resource type (``*`` for all) and permission letters;
    ``query`` holds the (name, value) pairs of a granular scope, in their order (empty: the
    scope is not constrained)."""

    context: str
    resource_type: str
    permissions: frozenset[str]
    query: tuple[tuple[str, str], ...] = ()

    def allows(self, letter: str, resource_type: str | None) -> bool:
        """True when this scope grants ``letter`` (c r u d s) on ``resource_type`` (None: all
        types, which only a ``*`` scope grants)."""
        if letter not in self.permissions:
            return False
        return self.resource_type == "*" or self.resource_type == resource_type

    def covers(self, other: Scope) -> bool:
        """True when everything ``other`` grants is granted by this scope too: ``other``'s
        conditions include all of this scope's (each condition only ever narrows)."""
        return (self.context == other.context
                and self.resource_type in ("*", other.resource_type)
                and other.permissions <= self.permissions
                and set(self.query) <= set(other.query))

    def text(self) -> str:
        """The scope as text, which ``parse_scope`` turns back into this scope."""
        letters = "".join(c for c in "cruds" if c in self.permissions)
        found = f"{self.context}/{self.resource_type}.{letters}"
        if self.query:
            found += "?" + "&".join(f"{quote(n, safe=SAFE)}={quote(v, safe=SAFE)}"
                                    for n, v in self.query)
        return found


def _query(text: str) -> tuple[tuple[str, str], ...] | None:
    """The ``param=value`` pairs of a granular scope, %-escapes decoded; None when any pair
    is malformed (no ``=``, an empty name or value, a name that is no search parameter)."""
    pairs = []
    for part in text.split("&"):
        name, equals, value = part.partition("=")
        name, value = unquote(name), unquote(value)
        if not equals or not value or not _NAME.match(name):
            return None
        pairs.append((name, value))
    return tuple(pairs)


def parse_scope(text: str) -> Scope | None:
    """One resource scope (SMART App Launch 2.0 §3.0.1/3.0.2); None when ``text`` is not a
    resource scope (``openid``, ``launch/patient``, ...), or is a v1 scope with a query, or
    its query is malformed."""
    match = _SCOPE.match(text)
    if match is None:
        return None
    context, rtype, perms, query = match.groups()
    letters = V1.get(perms) or frozenset(perms)
    if not letters:
        return None
    if query is None:
        return Scope(context, rtype, letters)
    pairs = _query(query)
    if pairs is None or perms in V1:
        return None
    return Scope(context, rtype, letters, pairs)


@lru_cache(maxsize=1024)  # a few scope strings, parsed on every request (results immutable)
def parse_scopes(text: str) -> tuple[tuple[Scope, ...], tuple[str, ...]]:
    """A space-separated scope string (RFC 6749 §3.3) as (resource scopes, other scopes)."""
    resource: list[Scope] = []
    other: list[str] = []
    for word in text.split():
        scope = parse_scope(word)
        if scope is None:
            other.append(word)
        else:
            resource.append(scope)
    return tuple(resource), tuple(other)


def grant(requested: str, allowed: str) -> str:
    """The part of ``requested`` that ``allowed`` covers (RFC 6749 §3.3: the server may grant
    less than asked); an empty request asks for everything allowed."""
    permitted, _ = parse_scopes(allowed)
    if not requested.strip():
        return allowed
    granted = []
    for word in requested.split():
        scope = parse_scope(word)
        if scope is not None and any(p.covers(scope) for p in permitted):
            granted.append(word)
    return " ".join(granted)
