"""The security objects one server shares, built from one database and clock.

Accounts, signing keys, revoked token ids and the audit trail live in the same database as the
record (tables from migration 0004), so a backup holds both and one transaction log orders them.
The in-memory store has no SQL database; it gets a private SQLite file in a temporary folder,
enough for tests and a throw-away development server.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from medarchive.security.abac import Abac
from medarchive.security.access import Access
from medarchive.security.accounts import Accounts
from medarchive.security.appgrants import build_app_grants
from medarchive.security.audit import AuditTrail
from medarchive.security.authz import Policy
from medarchive.security.guard import Guard
from medarchive.security.oauth import OAuthServer, Throttle
from medarchive.security.relations import Relations
from medarchive.security.roles import RoleTable, builtin
from medarchive.security.tokens import TokenService
from medarchive.store.sql.database import Database, open_database
from medarchive.store.sql.migrations import migrate

TOKEN_PATH = "/auth/token"
STYLE_PATH = "/ui/static/smart-style.json"  # SMART smart_style_url


@dataclass
class Security:
    """Everything the transports and the service path need for identity, access and audit."""

    db: Database
    accounts: Accounts
    tokens: TokenService
    trail: AuditTrail
    oauth: OAuthServer
    guard: Guard
    owned_folder: Path | None = None
    access: Access | None = None  # entitlements, attributes, break-the-glass (migration 0007)

    def close(self) -> None:
        self.trail.close()
        if self.owned_folder is not None:
            self.db.close()
            shutil.rmtree(self.owned_folder, ignore_errors=True)


def security_database(store: Any) -> tuple[Database, Path | None]:
    """The store's own SQL database, or a private SQLite file for the in-memory store in a
    temporary folder that the caller owns (and removes on close)."""
    db = getattr(store, "db", None)
    if db is not None:
        migrate(db)
        return db, None
    folder = Path(tempfile.mkdtemp(prefix="medarchive-security-"))
    db = open_database(f"sqlite:///{folder / 'security.db'}")
    migrate(db)
    return db, folder


def build_security(store: Any, spec: Any, *, issuer: str, now: Callable[[], datetime],
                   token_lifetime_s: int, policy: Policy | None = None,
                   relationship_required: bool = True,
                   break_glass_minutes: int = 60,
                   refresh_lifetime_s: int = 30 * 86_400,
                   online_refresh_lifetime_s: int = 43_200,
                   audit_read_commit: str = "wait",
                   roles: RoleTable | None = None) -> Security:
    """Security for a server whose FHIR base URL (token issuer and audience) is ``issuer``;
    ``roles`` is the role table (security.roles; default the built-in one), which decides
    both the Policy's grants and which roles need a care relationship."""
    table = roles or builtin()
    db, owns = security_database(store)
    accounts = Accounts(db, now)
    tokens = TokenService(db, issuer, now, token_lifetime_s)
    trail = AuditTrail(db, now, audit_read_commit)
    base = issuer.rsplit("/fhir", 1)[0] if issuer.endswith("/fhir") else issuer
    oauth = OAuthServer(accounts, tokens, trail, base + TOKEN_PATH, Throttle(now))
    oauth.apps = build_app_grants(db, accounts, tokens, trail,  # SMART App Launch
                                  refresh_lifetime_s=refresh_lifetime_s,
                                  online_refresh_lifetime_s=online_refresh_lifetime_s,
                                  style_url=base + STYLE_PATH)
    guard = Guard(policy or Policy(roles=table.grants), trail, spec)
    access = Access(db, now)
    guard.abac = Abac(access, Relations(store, spec), spec,
                      relationship_required=relationship_required,
                      break_glass_minutes=break_glass_minutes,
                      relationship_roles=table.relationship)
    return Security(db, accounts, tokens, trail, oauth, guard, owns, access)
