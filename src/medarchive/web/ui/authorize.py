"""SMART App Launch pages: the authorization endpoint's login and consent, and EHR launch.

``/auth/authorize`` (GET, or POST for ``authorize-post``) checks the request
(security.appgrants), then shows the UI's login (password, TOTP when enrolled: the same
session cookie, CSRF check, lockout and audit as ``/login``) and a consent page listing what
the app asks for. Consent is a CSRF-protected POST; the request's parameters travel in hidden
fields and are checked again on every step, so no pending-request state is kept. A patient
user's grant always carries their own Patient; other users pick one (search by name or MRN, and
the record is read through the router as the user, so only patients they may open can be
chosen). ``/apps`` is the chart's "Launch app": a POST creates a launch id carrying the patient
(and an encounter) and sends the browser to the app's launch URL with ``iss`` and ``launch``.

Pages that end in a redirect to an app widen the Content-Security-Policy's ``form-action``
by the app's origin, since browsers apply it to the redirect after a form submission.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from medarchive.errors import FhirError
from medarchive.security.authcode import AuthorizeError, AuthorizeRequest, with_query
from medarchive.security.scopes import parse_scope
from medarchive.web.ui.chart import mrn_of, name_of
from medarchive.web.ui.clinic import Clinic, UiError
from medarchive.web.ui.i18n import N_
from medarchive.web.ui.pages import (
    CSP,
    Ui,
    address,
    checked_form,
    finish,
    is_tls,
    language,
    render,
)
from medarchive.web.ui.search import find_patients
from medarchive.web.ui.session import COOKIE, Session, Sessions, cookie_options

LETTERS = {"c": N_("create"), "r": N_("read"), "u": N_("update"), "d": N_("delete"),
           "s": N_("search")}
CONTEXT_WORDS = {
    "openid": N_("Know who you are: your user name"),
    "fhirUser": N_("Know who you are: your Practitioner or Patient record"),
    "profile": N_("Know who you are: your user name"),
    "launch": N_("Know the patient and encounter open in MedArchive"),
    "launch/patient": N_("Know which patient you select"),
    "launch/encounter": N_("Know the selected encounter"),
    "offline_access": N_("Keep access after you log out, until you revoke it"),
    "online_access": N_("Keep access while you are working"),
}
PATIENT_SCOPE = N_("%(actions)s %(types)s of the selected patient")
USER_SCOPE = N_("%(actions)s %(types)s that you may access")
ALL_TYPES = N_("all kinds of records")
ONLY_WHERE = N_("%(scope)s, only those where %(conditions)s")


def code(value: str) -> str:
    """A token value as a person reads it: the code without its system."""
    return value.rpartition("|")[2]


def describe(word: str, gettext: Callable[[str], str]) -> str:
    """A scope in words the user understands, in their language; a granular scope's search
    condition is named (``category = laboratory``), so the grant never reads wider than it
    is."""
    scope = parse_scope(word)
    if scope is None:
        return gettext(CONTEXT_WORDS.get(word, word))
    actions = ", ".join(gettext(LETTERS[c]) for c in "cruds" if c in scope.permissions)
    types = gettext(ALL_TYPES) if scope.resource_type == "*" else scope.resource_type
    template = PATIENT_SCOPE if scope.context == "patient" else USER_SCOPE
    text = gettext(template) % {"actions": actions, "types": types}
    if not scope.query:
        return text
    conditions = "; ".join(f"{name} = {' / '.join(code(v) for v in value.split(','))}"
                           for name, value in scope.query)
    return gettext(ONLY_WHERE) % {"scope": text, "conditions": conditions}


def form_source(uri: str) -> str:
    """The CSP source expression of ``uri``'s origin (or its private-use scheme)."""
    parts = urlsplit(uri)
    if parts.scheme in ("http", "https"):
        return f"{parts.scheme}://{parts.netloc}"
    return f"{parts.scheme}:"


def allowing(response: Response, uris: Sequence[str]) -> Response:
    """``response`` with the CSP's form-action widened to the origins of ``uris``; no
    Referer leaves the page (its URL carries the request's state)."""
    sources = " ".join(sorted({form_source(u) for u in uris}))
    if sources:
        response.headers["Content-Security-Policy"] = CSP.replace(
            "form-action 'self'", f"form-action 'self' {sources}")
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def to_app(location: str) -> Response:
    """303 to the app (RFC 6749 §4.1.2), never cached."""
    response = RedirectResponse(location, status_code=303)
    response.headers["Cache-Control"] = "no-store"
    return response


async def _pairs(request: Request) -> list[tuple[str, str]]:
    if request.method == "GET":
        return list(request.query_params.multi_items())
    body = (await request.body()).decode("utf-8", "replace")
    return parse_qsl(body, keep_blank_values=True)


def app_routes(services: Any, *, idle_s: int = 900) -> list[BaseRoute]:
    """``/auth/authorize`` (+ ``/login``, ``/decision``) and ``/apps`` (+ ``/launch``)."""
    ui = Ui(services, Sessions(services.security, idle_s))
    grants = services.security.oauth.apps
    fhir_base = services.security.tokens.issuer

    async def session_of(request: Request) -> Session | None:
        return await run_in_threadpool(ui.sessions.current, request.cookies.get(COOKIE),
                                       address(request))

    def refused(request: Request, exc: FhirError) -> Response:
        if isinstance(exc, AuthorizeError) and exc.redirect_uri is not None:
            return to_app(exc.location())
        return render(request, "error.html", None, {"error": UiError(exc.status, [str(exc)])},
                      exc.status)

    def login_page(request: Request, checked: AuthorizeRequest, step: str = "password",
                   status: int = 200, **more: Any) -> Response:
        return allowing(render(request, "authorize_login.html", None, {
            "params": checked.params, "step": step, **more}, status), [])

    async def consent_page(request: Request, checked: AuthorizeRequest, session: Session,
                           error: str | None = None, status: int = 200) -> Response:
        consent = await run_in_threadpool(grants.consent, checked, session.username)
        clinic = Clinic(ui.router, session.actor)
        patient = None
        if consent.patient:
            try:
                patient = await run_in_threadpool(clinic.read, "Patient", consent.patient)
            except UiError:
                patient = {"id": consent.patient}
        text = request.query_params.get("patient_q", "").strip()
        results = None
        if consent.choose_patient and text:
            results = await run_in_threadpool(find_patients, clinic, text)
        gettext = language(request).gettext
        scopes = [(w, describe(w, gettext)) for w in consent.scope.split()]
        return allowing(render(request, "authorize_consent.html", session, {
            "params": checked.params, "consent": consent, "scopes": scopes,
            "patient": patient, "patient_q": text, "results": results, "error": error,
            "name_of": name_of, "mrn_of": mrn_of}, status), [checked.redirect_uri])

    async def authorize(request: Request) -> Response:
        try:
            checked = await run_in_threadpool(grants.request, await _pairs(request))
        except FhirError as exc:
            return refused(request, exc)
        session = await session_of(request)
        if session is None:
            if request.headers.get("sec-fetch-site") == "cross-site" and request.method == "GET":
                # the SameSite=Strict session cookie is not sent on a navigation from the
                # app's site: reload from this site once, so a logged-in user is recognized
                here = f"{request.url.path}?{urlencode(checked.params)}"
                return allowing(render(request, "authorize_continue.html", None,
                                       {"url": here}), [])
            return login_page(request, checked)
        try:
            return await consent_page(request, checked, session)
        except FhirError as exc:
            return refused(request, exc)

    async def login(request: Request) -> Response:
        try:
            form = await checked_form(request)
            checked = await run_in_threadpool(grants.request, list(form.items()))
        except FhirError as exc:
            return refused(request, exc)
        username, password = form.get("username", "").strip(), form.get("password", "")
        code = (form.get("code") or "").strip() or None
        if code is None and await run_in_threadpool(ui.sessions.user_has_totp, username):
            return login_page(request, checked, "code", username=username, password=password)
        try:
            token = await run_in_threadpool(ui.sessions.login, username, password, code,
                                            address(request))
        except FhirError as exc:
            message = "Too many failed attempts; try again later." if exc.status == 429 else \
                "Wrong user name, password or code, or the account is locked."
            return login_page(request, checked, error=message, username=username,
                              status=exc.status)
        response = finish(request, RedirectResponse(
            "/auth/authorize?" + urlencode(checked.params), status_code=303), None)
        response.set_cookie(COOKIE, token, **cookie_options(is_tls(request), None))
        return response

    async def decision(request: Request) -> Response:
        try:
            form = await checked_form(request)
            checked = await run_in_threadpool(grants.request, list(form.items()))
        except FhirError as exc:
            return refused(request, exc)
        session = await session_of(request)
        if session is None:
            return login_page(request, checked)
        who = address(request)
        try:
            if form.get("decision") != "approve":
                return to_app(await run_in_threadpool(grants.deny, checked, session.username,
                                                      who))
            consent = await run_in_threadpool(grants.consent, checked, session.username)
            chosen = (form.get("patient_id", "").strip() or form.get("patient", "").strip()
                      or None)
            if consent.choose_patient:
                if chosen is None:
                    return await consent_page(request, checked, session,
                                              N_("Choose a patient first."), 422)
                try:
                    await run_in_threadpool(Clinic(ui.router, session.actor).read, "Patient",
                                            chosen)
                except UiError as exc:
                    return await consent_page(request, checked, session,
                                              N_("You may not open this patient's record."),
                                              exc.status)
            return to_app(await run_in_threadpool(grants.approve, checked, session.username,
                                                  chosen, who))
        except FhirError as exc:
            return refused(request, exc)

    async def launch_page(request: Request) -> Response:
        session = await session_of(request)
        if session is None:
            return finish(request, RedirectResponse("/login", status_code=303), None)
        patient_id = request.query_params.get("patient", "")
        try:
            patient = await run_in_threadpool(Clinic(ui.router, session.actor).read,
                                              "Patient", patient_id)
        except UiError as exc:
            return render(request, "error.html", session, {"error": exc}, exc.status)
        apps = await run_in_threadpool(grants.apps.launchable)
        names = {a.client_id: (await run_in_threadpool(grants.accounts.client,
                                                       a.client_id)).name for a in apps}
        return allowing(render(request, "apps.html", session, {
            "patient": patient, "apps": apps, "names": names, "name_of": name_of,
            "encounter": request.query_params.get("encounter", "")}),
            [a.launch_uri for a in apps if a.launch_uri])

    async def launch(request: Request) -> Response:
        session = await session_of(request)
        if session is None:
            return finish(request, RedirectResponse("/login", status_code=303), None)
        form = await checked_form(request)
        app = await run_in_threadpool(grants.app, form.get("client_id", ""))
        patient_id, encounter = form.get("patient", ""), form.get("encounter", "") or None
        clinic = Clinic(ui.router, session.actor)
        try:
            if app is None or not app.launch_uri:
                raise UiError(404, ["no such app"])
            await run_in_threadpool(clinic.read, "Patient", patient_id)
            if encounter is not None:
                found = await run_in_threadpool(clinic.read, "Encounter", encounter)
                if (found.get("subject") or {}).get("reference") != f"Patient/{patient_id}":
                    raise UiError(422, ["the encounter is not this patient's"])
        except UiError as exc:
            return render(request, "error.html", session, {"error": exc}, exc.status)
        launch_id = await run_in_threadpool(grants.launches.create, session.username,
                                            app.client_id, patient_id, encounter)
        await run_in_threadpool(grants.launched, session.actor, app.client_id, patient_id,
                                address(request))
        return to_app(with_query(app.launch_uri, [("iss", fhir_base), ("launch", launch_id)]))

    return [
        Route("/auth/authorize", authorize, methods=["GET", "POST"]),
        Route("/auth/authorize/login", login, methods=["POST"]),
        Route("/auth/authorize/decision", decision, methods=["POST"]),
        Route("/apps", launch_page, methods=["GET"]),
        Route("/apps/launch", launch, methods=["POST"]),
    ]
