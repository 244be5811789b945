"""The web UI's routes: login/logout, language, patient search, chart and data entry.

Pages are plain HTML forms (GET for searches, POST + CSRF token for changes, redirect after
POST). Each request finds its session from the cookie (``session``), builds a ``Clinic`` that
runs FHIR interactions as the user through the router, and renders a template. Blocking
service calls run in worker threads like the REST API's. Admin pages are in ``admin``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from medarchive.errors import FhirError
from medarchive.security.emergency import break_glass
from medarchive.web.ui import i18n
from medarchive.web.ui.chart import load_chart
from medarchive.web.ui.clinic import Clinic, UiError
from medarchive.web.ui.entry import FORMS, initial_values, localized, save
from medarchive.web.ui.i18n import N_
from medarchive.web.ui.pages import (
    HERE,
    Ui,
    address,
    checked_form,
    durably,
    is_tls,
    language,
    redirect,
    render,
)
from medarchive.web.ui.questionnaire import KINDS, fields_of, questionnaire
from medarchive.web.ui.search import find_patients
from medarchive.web.ui.session import COOKIE, Session, Sessions, cookie_options

SECTIONS = {"vitals": "vitals", "problem": "problems", "allergy": "allergies",
            "medication": "medications", "note": "documents", "admission": "encounters"}
Page = Callable[[Request, Session], Awaitable[Response]]
FORM_TITLES = {"vitals": N_("Record vital signs"), "problem": N_("Add a problem"),
               "allergy": N_("Add an allergy"), "medication": N_("Order a medication"),
               "note": N_("Write a clinical note"), "admission": N_("Admit the patient")}


def logged_in(ui: Ui, page: Page) -> Callable[[Request], Awaitable[Response]]:
    """Wrap ``page`` so that it runs only with a valid session; otherwise to the login page."""

    async def endpoint(request: Request) -> Response:
        session = await run_in_threadpool(ui.sessions.current, request.cookies.get(COOKIE),
                                          address(request))
        if session is None:
            response = redirect(request, "/login")
            response.delete_cookie(COOKIE, path="/")
            return response
        try:
            return await page(request, session)
        except UiError as exc:
            return render(request, "error.html", session, {"error": exc}, exc.status)
        except FhirError as exc:
            return render(request, "error.html", session,
                          {"error": UiError(exc.status, [str(exc)])}, exc.status)
    return endpoint


def ui_routes(services: Any, *, idle_s: int = 900) -> list[BaseRoute]:
    """The UI at ``/`` (pages) and ``/ui/static`` (the UI's own CSS and JS)."""
    ui = Ui(services, Sessions(services.security, idle_s))

    def now() -> datetime:
        return services.repository.now().astimezone(UTC)  # type: ignore[no-any-return]

    def clinic(session: Session) -> Clinic:
        return Clinic(ui.router, session.actor if session.secured else None)

    # -- login and logout -----------------------------------------------------------------

    async def login_page(request: Request) -> Response:
        if not ui.sessions.enabled:
            return redirect(request, "/")
        return render(request, "login.html", None, {"step": "password"})

    async def login(request: Request) -> Response:
        if not ui.sessions.enabled:
            return redirect(request, "/")
        try:
            form = await checked_form(request)
        except FhirError as exc:
            return render(request, "login.html", None, {"step": "password",
                                                        "error": str(exc)}, exc.status)
        username, password = form.get("username", "").strip(), form.get("password", "")
        code = form.get("code")
        if code is None and await run_in_threadpool(ui.sessions.user_has_totp, username):
            return render(request, "login.html", None, {"step": "code", "username": username,
                                                        "password": password})
        try:
            token = await run_in_threadpool(ui.sessions.login, username, password,
                                            (code or "").strip() or None, address(request))
        except FhirError as exc:
            message = "Too many failed attempts; try again later." if exc.status == 429 else \
                "Wrong user name, password or code, or the account is locked."
            return render(request, "login.html", None, {"step": "password", "error": message,
                                                        "username": username}, exc.status)
        response = redirect(request, "/")
        response.set_cookie(COOKIE, token, **cookie_options(is_tls(request), None))
        return response

    async def logout(request: Request) -> Response:
        try:
            await checked_form(request)
        except FhirError as exc:
            await run_in_threadpool(ui.sessions.logout, request.cookies.get(COOKIE),
                                    address(request), exc)
            raise
        await run_in_threadpool(ui.sessions.logout, request.cookies.get(COOKIE),
                                address(request))
        response = redirect(request, "/login?bye=1")
        response.delete_cookie(COOKIE, path="/")
        return response

    async def set_language(request: Request) -> Response:
        form = await checked_form(request)
        code = form.get("language", "en")
        back = form.get("next", "/")
        local = back.startswith("/") and not back.startswith(("//", "/\\"))
        response = redirect(request, back if local else "/")  # never to another site
        if code in i18n.LANGUAGES:
            response.set_cookie(i18n.COOKIE, code, max_age=365 * 86400, httponly=True,
                                samesite="strict", secure=is_tls(request), path="/")
        return response

    # -- search and chart -----------------------------------------------------------------

    async def home(request: Request, session: Session) -> Response:
        text = request.query_params.get("q", "")
        birthdate = request.query_params.get("birthdate", "")
        results = None
        if text or birthdate:
            results = await durably(find_patients, clinic(session), text, birthdate)
        return render(request, "search.html", session, {"q": text, "birthdate": birthdate,
                                                        "results": results})

    async def chart(request: Request, session: Session) -> Response:
        patient_id = request.path_params["id"]
        try:
            loaded = await durably(load_chart, clinic(session), patient_id,
                                             now().date())
        except UiError as exc:  # not found or not related: offer break-the-glass
            if exc.status != 404 or not session.secured or \
                    session.role not in services.security.guard.abac.relationship_roles:
                raise
            return render(request, "error.html", session, {"error": exc, "glass": patient_id},
                          404)
        return render(request, "chart.html", session, {
            "chart": loaded, "saved": request.query_params.get("saved")})

    def form_page(request: Request, session: Session, kind: str, patient: Any,
                  values: Any, errors: Any, problems: list[str], status: int) -> Response:
        """A data-entry form: drawn from its Questionnaire, or its own template."""
        context = {"kind": kind, "title": FORM_TITLES[kind], "patient": patient,
                   "values": values, "errors": errors, "problems": problems}
        if kind in KINDS:
            lang = language(request).code
            context["fields"] = fields_of(questionnaire(kind), lang)
            context["errors"] = localized(kind, errors, lang)
            return render(request, "form_questionnaire.html", session, context, status)
        return render(request, f"form_{kind}.html", session, context, status)

    async def entry_page(request: Request, session: Session) -> Response:
        kind, patient_id = request.path_params["form"], request.path_params["id"]
        if kind not in FORMS:
            raise UiError(404, ["no such form"])
        patient = await durably(clinic(session).read, "Patient", patient_id)
        return form_page(request, session, kind, patient, initial_values(kind, now()), {}, [],
                         200)

    async def entry(request: Request, session: Session) -> Response:
        kind, patient_id = request.path_params["form"], request.path_params["id"]
        if kind not in FORMS:
            raise UiError(404, ["no such form"])
        fields = await checked_form(request)
        service = clinic(session)
        patient = await durably(service.read, "Patient", patient_id)
        checked = FORMS[kind](fields, patient_id, now())
        problems: list[str] = []
        if checked.ok:
            try:
                await durably(save, service, checked)
            except UiError as exc:
                problems = exc.messages
            else:
                return redirect(request, f"/patients/{patient_id}?saved={kind}"
                                f"#{SECTIONS[kind]}", session)
        return form_page(request, session, kind, patient, fields, checked.errors, problems,
                         422)

    async def glass(request: Request, session: Session) -> Response:
        """Break-the-glass from the UI (docs/security.md): a stated reason, then the chart."""
        patient_id = request.path_params["id"]
        fields = await checked_form(request)
        if not session.secured:
            raise UiError(404, ["break-the-glass needs MEDARCHIVE_AUTH=on"])
        await run_in_threadpool(break_glass, services.security, session.actor, patient_id,
                                fields.get("reason", ""))
        return redirect(request, f"/patients/{patient_id}", session)

    from medarchive.web.ui.admin import admin_routes

    return [
        Route("/", logged_in(ui, home), methods=["GET"]),
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/language", set_language, methods=["POST"]),
        Route("/patients/{id}", logged_in(ui, chart), methods=["GET"]),
        Route("/patients/{id}/new/{form}", logged_in(ui, entry_page), methods=["GET"]),
        Route("/patients/{id}/new/{form}", logged_in(ui, entry), methods=["POST"]),
        Route("/patients/{id}/break-glass", logged_in(ui, glass), methods=["POST"]),
        *[Route(path, logged_in(ui, page), methods=["GET"])
          for path, page in admin_routes(ui).items()],
        Mount("/ui/static", StaticFiles(directory=Path(HERE) / "static"), name="ui-static"),
    ]
