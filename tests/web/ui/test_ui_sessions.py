"""Web UI sessions on SQLite and PostgreSQL: the login cookie, CSRF, two-factor login, idle
timeout and refresh, logout (revoked and audited), and a disabled user's session ending."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner
from ui_forms import csrf_of

from medarchive.cli.main import app
from medarchive.security import totp
from medarchive.security.tokens import REVOCATION_RECHECK_S

PASSWORD = "a long enough passphrase"  # the site's (tests/web/ui/conftest.py)
Site = Any


@pytest.fixture
def client(backend_site: Site) -> TestClient:
    return TestClient(backend_site.app, raise_server_exceptions=True, follow_redirects=True)


def new_user(site: Site, name: str, role: str = "physician") -> str:
    site.services.security.accounts.add_user(name, role, PASSWORD)
    return name


def logouts(site: Site, after: int) -> list[dict[str, Any]]:
    return [e for _, e in site.services.security.trail.events(after, 100_000)
            if e["subtype"][0]["code"] == "110123"]


def test_login_sets_a_strict_http_only_cookie_and_shows_the_role(backend_site: Site,
                                                                 client: TestClient) -> None:
    token = csrf_of(client.get("/login").text)
    response = client.post("/login", follow_redirects=False, data={
        "username": "doctor", "password": backend_site.password, "csrf_token": token})
    assert response.status_code == 303
    cookie = response.headers["set-cookie"].lower()
    assert "ma_session=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
    assert "secure" not in cookie  # plain HTTP here; Secure over TLS (tests/web/test_tls.py)
    home = client.get("/")
    assert 'data-role="physician"' in home.text and "doctor" in home.text


def test_wrong_password_is_refused_without_saying_why(backend_site: Site,
                                                      client: TestClient) -> None:
    response = backend_site.login(client, password="wrong password here")
    assert response.status_code == 401
    assert "Wrong user name, password or code" in response.text
    assert "ma_session" not in client.cookies


def test_posts_without_the_csrf_token_or_from_another_site_are_refused(
        backend_site: Site, client: TestClient) -> None:
    client.get("/login")
    bare = client.post("/login", data={"username": "doctor", "password": backend_site.password})
    assert bare.status_code == 403 and "ma_session" not in client.cookies
    token = client.cookies["ma_csrf"]
    forged = client.post("/login", headers={"origin": "https://evil.example"},
                         data={"username": "doctor", "password": backend_site.password,
                               "csrf_token": token})
    assert forged.status_code == 403


def test_two_factor_users_get_a_code_step(backend_site: Site, client: TestClient) -> None:
    step = backend_site.login(client, "secure")
    assert step.status_code == 200 and 'name="code"' in step.text
    assert "ma_session" not in client.cookies
    code = totp.totp(totp._key(backend_site.totp_secret), backend_site.clock().timestamp())
    done = client.post("/login", data={"username": "secure", "password": backend_site.password,
                                       "code": code, "csrf_token": csrf_of(step.text)})
    assert 'data-role="nurse"' in done.text


def test_logout_revokes_the_session_and_is_audited(backend_site: Site,
                                                   client: TestClient) -> None:
    name = new_user(backend_site, "leaving")
    assert backend_site.login(client, name).status_code == 200
    start = backend_site.services.security.trail.head()[0]
    cookie = client.cookies["ma_session"]
    refused = client.post("/logout", data={"csrf_token": "forged"})
    assert refused.status_code == 403
    assert client.get("/", follow_redirects=False).status_code == 200  # still logged in
    client.post("/logout", data={"csrf_token": client.cookies["ma_csrf"]})
    client.cookies.set("ma_session", cookie)
    assert client.get("/").url.path == "/login"
    found = logouts(backend_site, start)
    assert [(e["outcome"], e["agent"][0]["who"]["identifier"]["value"]) for e in found] == [
        ("4", name), ("0", name)]
    assert "network" in found[1]["agent"][0]


def test_idle_sessions_end_and_active_ones_are_refreshed(backend_site: Site,
                                                         client: TestClient) -> None:
    assert backend_site.login(client).status_code == 200
    backend_site.clock.advance(120)
    refreshed = client.get("/", follow_redirects=False)
    assert refreshed.status_code == 200 and "ma_session=" in refreshed.headers["set-cookie"]
    backend_site.clock.advance(901)
    assert client.get("/").url.path == "/login"


def test_disabling_a_user_ends_the_ui_session(backend_site: Site, client: TestClient) -> None:
    """The audit finding: after ``users disable`` the session went on being renewed."""
    name = new_user(backend_site, "leaver")
    assert backend_site.login(client, name).status_code == 200
    assert client.get("/", follow_redirects=False).status_code == 200
    disabled = CliRunner().invoke(app, ["--database-url", backend_site.database_url,
                                        "users", "disable", name])
    assert disabled.exit_code == 0, disabled.output
    backend_site.clock.advance(REVOCATION_RECHECK_S + 1)
    ended = client.get("/", follow_redirects=False)
    assert ended.status_code == 303 and ended.headers["location"].endswith("/login")
    for _ in range(3):  # the audit's +35/+70/+105 s: no fresh token, no page
        backend_site.clock.advance(35)
        page = client.get("/", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"].endswith("/login")
    assert backend_site.login(client, name).status_code == 401
