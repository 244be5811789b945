"""SMART on FHIR scopes, v1 and v2, parsed into what they permit.

SMART App Launch 2.0 §3.0 "Scopes and Launch Context": ``context/type.permissions`` where context
is ``patient``, ``user`` or ``system``, type a resource type or ``*``, and permissions either v1
``read``/``write``/``*`` or v2 letters from ``cruds`` in that order. v1 ``read`` means read and
search, ``write`` create, update and delete. Granular v2 scopes (``?param=value``) narrow a grant
further; they are not supported yet and are refused rather than widened.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_SCOPE = re.compile(r"^(patient|user|system)/(\*|[A-Z][A-Za-z]{1,63})\.(read|write|\*|c?r?u?d?s?)$")
V1 = {"read": frozenset("rs"), "write": frozenset("cud"), "*": frozenset("cruds")}
ALL = frozenset("cruds")


@dataclass(frozen=True, slots=True)
class Scope:
    """One resource scope: its context, resource type (``*`` for all) and permission letters."""

    context: str
    resource_type: str
    permissions: frozenset[str]

    def allows(self, letter: str, resource_type: str | None) -> bool:
        """True when this scope grants ``letter`` (c r u d s) on ``resource_type`` (None: all
        types, which only a ``*`` scope grants)."""
        if letter not in self.permissions:
            return False
        return self.resource_type == "*" or self.resource_type == resource_type

    def covers(self, other: Scope) -> bool:
        """True when everything ``other`` grants is granted by this scope too."""
        return (self.context == other.context
                and self.resource_type in ("*", other.resource_type)
                and other.permissions <= self.permissions)

    def text(self) -> str:
        letters = "".join(c for c in "cruds" if c in self.permissions)
        return f"{self.context}/{self.resource_type}.{letters}"


def parse_scope(text: str) -> Scope | None:
    """One resource scope (SMART App Launch 2.0 §3.0.1/3.0.2); None when ``text`` is not a
    resource scope (``openid``, ``launch/patient``, ...) or is a v2 granular scope."""
    match = _SCOPE.match(text)
    if match is None:
        return None
    context, rtype, perms = match.groups()
    letters = V1.get(perms) or frozenset(perms)
    if not letters:
        return None
    return Scope(context, rtype, letters)


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
