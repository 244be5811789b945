"""SMART App Launch 2.0 for user-facing apps: the authorization and token logic.

From an authorization request (``authcode.parse_authorize``) and the logged-in user to a
consent decision (``consent``, ``approve``, ``deny``), and from a code or refresh token to
tokens (``token``): an RS256 access token for the user with the granted scope and launch
context, a rotated refresh token when ``offline_access``/``online_access`` was granted, and an
OpenID Connect ID token with ``fhirUser`` when ``openid`` was. Grants are families: a replayed
code or refresh token revokes every refresh and access token of its grant. Every decision,
exchange, refresh and replay is an AuditEvent. Transport-free: the web layer renders the pages
and the OAuth server (``oauth``) authenticates the client.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from medarchive.errors import FhirError
from medarchive.security.accounts import Accounts, Client, User
from medarchive.security.actor import Actor
from medarchive.security.apps import App, Apps
from medarchive.security.audit import AuditTrail
from medarchive.security.audit_events import audit_event
from medarchive.security.authcode import (
    AuthCodes,
    AuthorizeError,
    AuthorizeRequest,
    CodeError,
    parse_authorize,
    with_query,
)
from medarchive.security.launch import Context, Launches
from medarchive.security.oauth import OAuthError
from medarchive.security.refresh import RefreshError, RefreshTokens, wants_refresh
from medarchive.security.scopes import parse_scope
from medarchive.security.tokens import TokenService
from medarchive.store.sql.database import Database

# Scopes that are not resource scopes but may be registered for and granted to an app
# (SMART App Launch 2.0 §2.0.5 "Scopes and launch context").
CONTEXT_SCOPES = ("openid", "fhirUser", "profile", "launch", "launch/patient",
                  "launch/encounter", "offline_access", "online_access")


def app_scope(requested: str, registered: str) -> str:
    """The requested words an app may be granted: resource scopes of context ``patient`` or
    ``user`` that a registered scope covers, and the context scopes it registered for."""
    allowed = registered.split()
    permitted = [s for s in (parse_scope(w) for w in allowed) if s is not None]
    granted: list[str] = []
    for word in requested.split():
        scope = parse_scope(word)
        if scope is None:
            ok = word in CONTEXT_SCOPES and word in allowed
        else:
            ok = scope.context in ("patient", "user") and any(p.covers(scope)
                                                              for p in permitted)
        if ok and word not in granted:
            granted.append(word)
    return " ".join(granted)


def narrowed(requested: str, original: str) -> str | None:
    """``requested`` when every word of it was part of ``original`` (or is a resource scope an
    original one covers): RFC 6749 §6, a refresh can only narrow. None otherwise."""
    words = original.split()
    permitted = [s for s in (parse_scope(w) for w in words) if s is not None]
    for word in requested.split():
        scope = parse_scope(word)
        if word not in words and (scope is None or not any(p.covers(scope)
                                                           for p in permitted)):
            return None
    return " ".join(requested.split())


def needs_patient(scope: str) -> bool:
    """True when a grant of ``scope`` must carry a patient: ``launch/patient`` or any
    ``patient/`` resource scope."""
    return any(w == "launch/patient" or w.startswith("patient/") for w in scope.split())


@dataclass(frozen=True, slots=True)
class Consent:
    """What the consent page shows and what approving grants."""

    client_name: str
    scope: str
    patient: str | None  # fixed by a patient user's own record or an EHR launch
    encounter: str | None
    choose_patient: bool  # the user must pick the patient
    launch_id: str | None


@dataclass
class AppGrants:
    """The authorization code and refresh token grants over the security tables of ``db``."""

    db: Database
    accounts: Accounts
    tokens: TokenService
    trail: AuditTrail
    codes: AuthCodes
    refresh: RefreshTokens
    launches: Launches
    style_url: str | None = None

    @property
    def apps(self) -> Apps:
        return Apps(self.db)

    def _audit(self, who: Actor, status: int, detail: str) -> None:
        self.trail.record(audit_event(who, "token", self.tokens.now(), status=status,
                                      detail=detail))

    def _who(self, username: str, role: str, client_id: str, address: str | None) -> Actor:
        return Actor("user", username, role, (), client_id=client_id, address=address)

    def app(self, client_id: str) -> App | None:
        """The registered app ``client_id`` when its client exists and is enabled."""
        found = self.apps.app(client_id)
        if found is None:
            return None
        try:
            if self.accounts.client(client_id).disabled:
                return None
        except FhirError:
            return None
        return found

    # -- authorization endpoint -----------------------------------------------------------

    def request(self, pairs: Sequence[tuple[str, str]]) -> AuthorizeRequest:
        """The checked authorization request in ``pairs``; AuthorizeError otherwise."""
        return parse_authorize(pairs, self.app, self.tokens.issuer)

    def consent(self, request: AuthorizeRequest, username: str) -> Consent:
        """What ``username`` is asked to approve; AuthorizeError (redirected) when nothing of
        the request can be granted or its launch id is not theirs."""
        client = self.accounts.client(request.client_id)
        user = self.accounts.user(username)
        scope = app_scope(request.scope, client.scope)

        def refuse(error: str, description: str) -> AuthorizeError:
            return AuthorizeError(error, description, request.redirect_uri, request.state)

        if not any(parse_scope(w) for w in scope.split()):
            raise refuse("invalid_scope", "none of the requested resource scopes is allowed "
                                          "for this client")
        patient, encounter, launch_id = None, None, None
        if "launch" in scope.split():
            launch = self.launches.peek(request.launch or "", username, request.client_id)
            if launch is None:
                raise refuse("invalid_request", "launch is missing, expired, or was made for "
                                                "another user or app")
            patient, encounter, launch_id = launch.patient, launch.encounter, launch.launch_id
        if user.role == "patient":
            patient = user.patient_id
        choose = needs_patient(scope) and patient is None
        return Consent(client.name, scope, patient, encounter, choose, launch_id)

    def approve(self, request: AuthorizeRequest, username: str, chosen_patient: str | None,
                address: str | None = None) -> str:
        """The user approved: a code for the app; returns where to send the browser. The
        caller has checked that ``chosen_patient`` is a Patient the user may read."""
        consent = self.consent(request, username)
        user = self.accounts.user(username)
        patient = consent.patient
        if consent.choose_patient:
            if not chosen_patient:
                raise ValueError("a patient must be chosen")
            patient = chosen_patient
        if consent.launch_id is not None and self.launches.take(
                consent.launch_id, username, request.client_id) is None:
            raise AuthorizeError("invalid_request", "the launch was already used or expired",
                                 request.redirect_uri, request.state)
        words = consent.scope.split()
        context = Context(
            patient=patient, encounter=consent.encounter,
            fhir_user=self.fhir_user(user) if "fhirUser" in words else None,
            nonce=request.nonce, need_patient_banner=patient is not None,
            smart_style_url=self.style_url if patient is not None else None)
        code = self.codes.issue(request.client_id, request.redirect_uri,
                                request.code_challenge, username, consent.scope, context)
        self._audit(self._who(username, user.role, request.client_id, address), 200,
                    f"authorize approved scope={consent.scope}"
                    + (f" patient={patient}" if patient else ""))
        return with_query(request.redirect_uri, [("code", code), ("state", request.state)])

    def deny(self, request: AuthorizeRequest, username: str, address: str | None = None) -> str:
        """The user refused: ``access_denied`` to the app (RFC 6749 §4.1.2.1)."""
        role = self.accounts.user(username).role
        self._audit(self._who(username, role, request.client_id, address), 403,
                    f"authorize denied scope={request.scope[:200]}")
        return AuthorizeError("access_denied", "the user denied the request",
                              request.redirect_uri, request.state).location()

    def launched(self, actor: Actor, client_id: str, patient: str,
                 address: str | None = None) -> None:
        """Audit an EHR launch the web UI made for ``actor``."""
        self._audit(self._who(actor.id, actor.role, client_id, address), 200,
                    f"launch created patient={patient}")

    def fhir_user(self, user: User) -> str | None:
        """The user's FHIR resource URL (SMART ``fhirUser``): their Patient, or the
        Practitioner linked to their account (``sec_attribute`` ``practitioner``)."""
        if user.patient_id:
            return f"{self.tokens.issuer}/Patient/{user.patient_id}"
        with self.db.reading() as cur:
            cur.execute(self.db.sql("SELECT value FROM sec_attribute WHERE principal = ? AND "
                                    "name = 'practitioner' ORDER BY value"), (user.username,))
            row = cur.fetchone()
        return f"{self.tokens.issuer}/Practitioner/{row[0]}" if row else None

    # -- token endpoint -------------------------------------------------------------------

    def token(self, client: Client, form: Mapping[str, str],
              address: str | None = None) -> dict[str, Any]:
        """``grant_type`` authorization_code or refresh_token for the authenticated (or
        public) ``client``."""
        if form.get("grant_type") == "authorization_code":
            return self._exchange(client, form, address)
        return self._refresh(client, form, address)

    def _user(self, username: str, grant_id: str, client: Client,
              address: str | None) -> User:
        try:
            user = self.accounts.user(username)
        except FhirError:
            user = None
        if user is None or user.disabled:
            self.revoke_grant(grant_id)
            self._audit(self._who(username, "unknown", client.client_id, address), 400,
                        "the user is disabled or removed; grant revoked")
            raise OAuthError("invalid_grant", "the user of this grant can no longer log in")
        return user

    def _exchange(self, client: Client, form: Mapping[str, str],
                  address: str | None) -> dict[str, Any]:
        who = self._who("unknown", "unknown", client.client_id, address)
        try:
            grant = self.codes.redeem(form.get("code", ""), client.client_id,
                                      form.get("redirect_uri", ""),
                                      form.get("code_verifier", ""))
        except CodeError as exc:
            if exc.replayed_grant is not None:
                self.revoke_grant(exc.replayed_grant)
            self._audit(who, 400, f"authorization_code refused: {exc}")
            raise OAuthError("invalid_grant", str(exc)) from None
        user = self._user(grant.username, grant.grant_id, client, address)
        response = self._issue(user, client, grant.grant_id, grant.scope, grant.context)
        if wants_refresh(grant.scope):
            response["refresh_token"] = self.refresh.issue(
                grant.grant_id, client.client_id, user.username, grant.scope, grant.context)
        self._audit(self._who(user.username, user.role, client.client_id, address), 200,
                    f"authorization_code exchanged scope={grant.scope}")
        return response

    def _refresh(self, client: Client, form: Mapping[str, str],
                 address: str | None) -> dict[str, Any]:
        token = form.get("refresh_token", "")
        who = self._who("unknown", "unknown", client.client_id, address)
        current = self.refresh.find(token)
        scope = None
        if current is not None and current.client_id == client.client_id \
                and form.get("scope", "").strip():
            scope = narrowed(form["scope"], current.scope)
            if scope is None or not any(parse_scope(w) for w in scope.split()):
                self._audit(who, 400, "refresh refused: scope wider than granted")
                raise OAuthError("invalid_scope", "a refresh may only narrow the granted scope")
        try:
            grant, successor = self.refresh.rotate(token, client.client_id)
        except RefreshError as exc:
            if exc.revoked_grant is not None:
                self.tokens.revoke_grant(exc.revoked_grant)
                self._audit(who, 400, "refresh token replayed: grant revoked")
            else:
                self._audit(who, 400, f"refresh refused: {exc}")
            raise OAuthError("invalid_grant", str(exc)) from None
        user = self._user(grant.username, grant.grant_id, client, address)
        context = replace(grant.context, nonce=None)
        response = self._issue(user, client, grant.grant_id, scope or grant.scope, context)
        response["refresh_token"] = successor
        self._audit(self._who(user.username, user.role, client.client_id, address), 200,
                    f"refresh scope={scope or grant.scope}")
        return response

    def _issue(self, user: User, client: Client, grant_id: str, scope: str,
               context: Context) -> dict[str, Any]:
        patient = user.patient_id if user.role == "patient" else context.patient
        response = self.tokens.issue(user.username, kind="user", role=user.role, scope=scope,
                                     client_id=client.client_id, patient=patient,
                                     encounter=context.encounter, grant=grant_id)
        response.update(context.token_fields())
        if "openid" in scope.split():
            response["id_token"] = self.tokens.id_token(
                user.username, client.client_id, fhir_user=context.fhir_user,
                nonce=context.nonce)
        return response

    def revoke_grant(self, grant_id: str) -> None:
        """Every refresh and access token of ``grant_id`` stops working."""
        self.refresh.revoke_grant(grant_id)
        self.tokens.revoke_grant(grant_id)

    # -- introspection and revocation of refresh tokens -----------------------------------

    def introspect(self, client: Client, token: str) -> dict[str, Any] | None:
        """RFC 7662 for a refresh token of ``client`` (other clients' are inactive)."""
        found = self.refresh.find(token)
        if found is None or found.client_id != client.client_id:
            return None
        body: dict[str, Any] = {"active": True, "scope": found.scope,
                                "client_id": found.client_id, "sub": found.username,
                                "exp": found.expires, "iat": found.issued,
                                "iss": self.tokens.issuer, "token_type": "refresh_token"}
        if found.context.patient:
            body["patient"] = found.context.patient
        return body

    def revoke(self, client: Client, token: str, address: str | None = None) -> bool:
        """RFC 7009 for a refresh token of ``client``: its whole grant is revoked (§2.1: the
        access tokens of the grant as well). False when it is not such a token."""
        found = self.refresh.find(token)
        if found is None or found.client_id != client.client_id:
            return False
        self.revoke_grant(found.grant_id)
        self._audit(self._who(found.username, "unknown", client.client_id, address), 200,
                    "refresh token revoked: grant revoked")
        return True


def build_app_grants(db: Database, accounts: Accounts, tokens: TokenService,
                     trail: AuditTrail, *, refresh_lifetime_s: int,
                     online_refresh_lifetime_s: int, style_url: str | None) -> AppGrants:
    """The app grants over the security tables of ``db``."""
    now: Callable[[], Any] = tokens.now
    return AppGrants(db, accounts, tokens, trail, AuthCodes(db, now),
                     RefreshTokens(db, now, offline_lifetime_s=refresh_lifetime_s,
                                   online_lifetime_s=online_refresh_lifetime_s),
                     Launches(db, now), style_url)
