"""A server with SMART apps registered, and the browser steps of the authorization code flow,
shared by test_authcode.py, test_refresh.py and test_launch.py.

``open_smart`` builds the real HTTP app (http_env.open_env: SQLite or PostgreSQL, encryption
on) with two patients, a physician, a patient user with TOTP off, and three apps: a public one
(PKCE only, with a launch URL), a confidential one (client secret) and a second public one.
The flow helpers drive any httpx-style client (Starlette's TestClient or a real
``httpx.Client`` on a served port) through login, consent and the token endpoint.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from http_env import Env, TestClient, open_env

from medarchive.security.apps import Apps
from medarchive.security.authcode import s256

PASSWORD = "a long enough passphrase"
REDIRECT = "https://app.example/callback"
LAUNCH_URL = "https://app.example/launch"
APP_SCOPE = ("launch launch/patient openid fhirUser offline_access online_access "
             "patient/*.rs user/*.rs")


@dataclass
class Smart:
    """The server and its registered apps."""

    env: Env
    public_id: str
    confidential_id: str
    confidential_secret: str
    other_id: str

    @property
    def client(self) -> Any:
        """For API calls (no cookies are set on it)."""
        return self.env.client

    def browser(self) -> Any:
        """A new browser: its own cookie jar, on the same app."""
        return TestClient(self.env.client.app, raise_server_exceptions=False)

    @property
    def fhir_base(self) -> str:
        return str(self.env.services.security.tokens.issuer)

    def events(self) -> list[str]:
        """outcomeDesc of every audit event, in order."""
        return [str(e.get("outcomeDesc", "")) for e in self.env.events()]


@contextmanager
def open_smart(request: pytest.FixtureRequest, backend: str, folder: Path,
               spec: Any) -> Iterator[Smart]:
    with open_env(request, backend, folder, spec, access_relationship_required=False) as env:
        services = env.services
        services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"Patient/{r['id']}"}}
            for r in ({"resourceType": "Patient", "id": "p1",
                       "name": [{"family": "Lovelace", "given": ["Ada"]}]},
                      {"resourceType": "Patient", "id": "p2",
                       "name": [{"family": "Hopper", "given": ["Grace"]}]})]})
        services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {"resourceType": "Encounter", "id": "e1", "status": "in-progress",
                          "class": {"code": "IMP"}, "subject": {"reference": "Patient/p1"}},
             "request": {"method": "PUT", "url": "Encounter/e1"}}]})
        accounts = services.security.accounts
        accounts.add_user("doctor", "physician", PASSWORD)
        accounts.add_user("pat", "patient", PASSWORD, patient_id="p1")
        apps = Apps(services.security.db)
        public, _ = accounts.add_client("Viewer", APP_SCOPE, with_secret=False)
        apps.register(public.client_id, [REDIRECT], public=True, launch_uri=LAUNCH_URL)
        confidential, secret = accounts.add_client("Charts", APP_SCOPE)
        apps.register(confidential.client_id, [REDIRECT], public=False)
        other, _ = accounts.add_client("Other", APP_SCOPE, with_secret=False)
        apps.register(other.client_id, ["http://127.0.0.1:9/cb"], public=True)
        assert secret is not None
        yield Smart(env, public.client_id, confidential.client_id, secret, other.client_id)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "the page has no CSRF field"
    return found.group(1)


def new_verifier() -> str:
    return secrets.token_urlsafe(48)


def params(smart: Smart, client_id: str, scope: str, verifier: str, **extra: str
           ) -> dict[str, str]:
    """An authorization request of ``client_id`` (PKCE S256)."""
    return {"response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
            "scope": scope, "state": "st-" + secrets.token_hex(4), "aud": smart.fhir_base,
            "code_challenge": s256(verifier), "code_challenge_method": "S256", **extra}


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def log_in(client: Any, request: dict[str, str], username: str,
           password: str = PASSWORD) -> Any:
    """The authorize page's login form, then the consent page it leads to."""
    page = client.get("/auth/authorize", params=request)
    assert page.status_code == 200 and 'action="/auth/authorize/login"' in page.text, page.text
    done = client.post("/auth/authorize/login", follow_redirects=False, data={
        **request, "csrf_token": csrf_of(page.text), "username": username,
        "password": password})
    assert done.status_code == 303, done.text
    consent = client.get(done.headers["location"])
    assert consent.status_code == 200, consent.text
    return consent


def decide(client: Any, request: dict[str, str], consent_html: str, decision: str = "approve",
           patient: str | None = None) -> Any:
    """POST the consent form; the 303 response (to the app, or a page)."""
    data = {**request, "csrf_token": csrf_of(consent_html), "decision": decision}
    if patient is not None:
        data["patient_id"] = patient
    return client.post("/auth/authorize/decision", data=data, follow_redirects=False)


def authorize(client: Any, request: dict[str, str], username: str,
              patient: str | None = None) -> dict[str, str]:
    """Log in, approve: the query the app receives on its redirect URI."""
    consent = log_in(client, request, username)
    sent = decide(client, request, consent.text, patient=patient)
    assert sent.status_code == 303, sent.text
    location = sent.headers["location"]
    assert location.startswith(REDIRECT + "?"), location
    return query_of(location)


def exchange(client: Any, code: str, verifier: str, client_id: str, **extra: str) -> Any:
    """The token request of a public app."""
    return client.post("/auth/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "client_id": client_id, "code_verifier": verifier, **extra})


def refresh(client: Any, token: str, client_id: str, **extra: str) -> Any:
    return client.post("/auth/token", data={"grant_type": "refresh_token",
                                            "refresh_token": token, "client_id": client_id,
                                            **extra})


def tokens_for(smart: Smart, username: str, scope: str, patient: str | None = None,
               client: Any = None) -> dict[str, Any]:
    """The whole flow for the public app: the token response."""
    client = client or smart.browser()
    verifier = new_verifier()
    request = params(smart, smart.public_id, scope, verifier)
    got = authorize(client, request, username, patient)
    assert got["state"] == request["state"]
    response = exchange(client, got["code"], verifier, smart.public_id)
    assert response.status_code == 200, response.text
    return dict(response.json())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
