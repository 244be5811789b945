"""User-facing SMART apps: the redirect URIs, public flag and launch URL of a registered client.

A client (``sec_client``, security/accounts.py) becomes an app once it has redirect URIs
(``sec_app``): the authorization code grant only ever redirects to one of them, compared
exactly (RFC 6749 §3.1.2.3; OAuth 2.0 Security BCP, RFC 9700 §4.1.3). Public apps (browser or
native apps that cannot keep a secret, RFC 6749 §2.1) have neither secret nor keys and rely on
PKCE alone. The launch URL is where the web UI sends the browser for an EHR launch.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from medarchive.store.sql.database import Database

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]", "::1"})


@dataclass(frozen=True, slots=True)
class App:
    client_id: str
    redirect_uris: tuple[str, ...]
    public: bool
    launch_uri: str | None


def check_redirect_uri(uri: str) -> str:
    """``uri`` when it may be registered as a redirect URI; ValueError otherwise. Absolute,
    no fragment (RFC 6749 §3.1.2), and https, or http on a loopback host (RFC 8252 §7.3), or a
    private-use scheme of a native app with a dot in it (RFC 8252 §7.1)."""
    parts = urlsplit(uri)
    if not parts.scheme or parts.fragment or "#" in uri or any(c.isspace() for c in uri):
        raise ValueError(f"redirect URI {uri!r} must be absolute, without fragment or spaces")
    if parts.scheme == "https" and parts.netloc:
        return uri
    if parts.scheme == "http":
        host = (parts.hostname or "").lower()
        if host in LOOPBACK_HOSTS or _is_loopback(host):
            return uri
        raise ValueError(f"redirect URI {uri!r}: plain http only on a loopback address")
    if "." in parts.scheme and parts.scheme not in ("http", "https"):
        return uri
    raise ValueError(f"redirect URI {uri!r}: use https, http on loopback, or a reverse-domain "
                     "private-use scheme (com.example.app:/callback)")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Apps:
    """Registered apps in ``sec_app`` of ``db``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._sql = db.sql

    def register(self, client_id: str, redirect_uris: Iterable[str], *, public: bool,
                 launch_uri: str | None = None) -> App:
        """Make ``client_id`` an app (or replace its registration)."""
        uris = tuple(check_redirect_uri(u) for u in redirect_uris)
        if not uris:
            raise ValueError("an app needs at least one redirect URI")
        if launch_uri is not None:
            check_redirect_uri(launch_uri)
        with self.db.writing() as cur:
            cur.execute(self._sql("DELETE FROM sec_app WHERE client_id = ?"), (client_id,))
            cur.execute(self._sql("INSERT INTO sec_app (client_id, redirect_uris, is_public, "
                                  "launch_uri) VALUES (?, ?, ?, ?)"),
                        (client_id, "\n".join(uris), int(public), launch_uri))
        return App(client_id, uris, public, launch_uri)

    def app(self, client_id: str) -> App | None:
        with self.db.reading() as cur:
            cur.execute(self._sql("SELECT redirect_uris, is_public, launch_uri FROM sec_app "
                                  "WHERE client_id = ?"), (client_id,))
            row = cur.fetchone()
        if row is None:
            return None
        return App(client_id, tuple(str(row[0]).split("\n")), bool(row[1]), row[2])

    def launchable(self) -> list[App]:
        """Apps with a launch URL, for the web UI's "Launch app" page."""
        with self.db.reading() as cur:
            cur.execute("SELECT client_id FROM sec_app WHERE launch_uri IS NOT NULL "
                        "ORDER BY client_id")
            ids = [str(row[0]) for row in cur.fetchall()]
        return [app for app in (self.app(i) for i in ids) if app is not None]
