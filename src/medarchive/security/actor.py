"""Who is acting: the authenticated user, client or in-process system of one interaction.

The HTTP edge authenticates a bearer token into an ``Actor`` and binds it for the duration of one
interaction; batch entries run inside the same binding, so they act as the caller did. Code that
runs in-process without a binding (CLI imports, the demo loader) acts as ``SYSTEM``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass

from medarchive.security.scopes import Scope, parse_scopes


@dataclass(frozen=True, slots=True)
class Actor:
    """An authenticated party: ``kind`` user, client or system; ``patient`` is the patient
    context (SMART launch context) that confines patient-level scopes and patient users;
    ``purpose`` the purpose of use the token was issued for (security.authz)."""

    kind: str
    id: str
    role: str
    scopes: tuple[Scope, ...]
    patient: str | None = None
    client_id: str | None = None
    address: str | None = None
    token_id: str | None = None
    purpose: str | None = None  # v3-PurposeOfUse of the token (None: the role's default)

    @property
    def patient_scoped(self) -> bool:
        """True when the actor may only see one patient's compartment."""
        return self.role == "patient" or any(s.context == "patient" for s in self.scopes)


SYSTEM = Actor("system", "medarchive", "system", parse_scopes("system/*.cruds")[0])
_CURRENT: ContextVar[Actor | None] = ContextVar("medarchive_actor", default=None)


def current_actor() -> Actor:
    """The actor bound to this interaction, or SYSTEM for in-process callers."""
    return _CURRENT.get() or SYSTEM


def bound_actor() -> Actor | None:
    """The actor bound to this interaction, None when nothing is bound."""
    return _CURRENT.get()


def bind(actor: Actor) -> Token[Actor | None]:
    """Bind ``actor`` until ``unbind`` (what ``acting`` does around a block)."""
    return _CURRENT.set(actor)


def unbind(token: Token[Actor | None]) -> None:
    """Undo the ``bind`` that returned ``token``."""
    _CURRENT.reset(token)


@contextmanager
def acting(actor: Actor) -> Iterator[Actor]:
    """Bind ``actor`` for the code inside the ``with`` block (and threads it copies into)."""
    token = bind(actor)
    try:
        yield actor
    finally:
        unbind(token)
