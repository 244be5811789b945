"""Rendering shared by every UI page: templates, language, session cookies, CSRF, headers.

Templates are Jinja2 with autoescaping; gettext comes from the request's Language (i18n), so
one environment serves both languages concurrently. Every HTML response carries a
Content-Security-Policy that allows only this server's own styles and scripts (no inline
script), ``Cache-Control: no-store`` (pages hold patient data) and the CSRF cookie.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from medarchive.errors import BadRequest
from medarchive.security.audit import deferred
from medarchive.web.ui import csrf, i18n
from medarchive.web.ui.chart import attachment_text, status_of, text_of, when_of
from medarchive.web.ui.charts import bar_chart, line_chart
from medarchive.web.ui.clinic import UiError
from medarchive.web.ui.session import COOKIE, Session, Sessions, cookie_options

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'; connect-src 'self'")
ADMIN_ROLES = frozenset({"administrator", "auditor"})

ENV = Environment(loader=FileSystemLoader(HERE / "templates"),
                  autoescape=select_autoescape(["html"]), trim_blocks=True,
                  lstrip_blocks=True, extensions=["jinja2.ext.i18n"])
ENV.globals.update(line_chart=line_chart, bar_chart=bar_chart, languages=i18n.LANGUAGES,
                   text_of=text_of, status_of=status_of, when_of=when_of,
                   attachment_text=attachment_text)


@dataclass
class Ui:
    """What the UI routes share: the built services and the session keeper."""

    services: Any
    sessions: Sessions

    @property
    def router(self) -> Any:
        return self.services.router


def address(request: Request) -> str | None:
    return request.client.host if request.client else None


def is_tls(request: Request) -> bool:
    return request.url.scheme == "https"


def language(request: Request) -> i18n.Language:
    """The request's language: the user's cookie, else Accept-Language."""
    return i18n.choose(request.cookies.get(i18n.COOKIE), request.headers.get("accept-language"))


def csrf_token(request: Request) -> str:
    """The CSRF token of this browser (a new one when it has none yet)."""
    token = request.cookies.get(csrf.COOKIE)
    if not token:
        token = request.scope.setdefault("ma_new_csrf", csrf.new_token())
    return str(token)


def secure_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def finish(request: Request, response: Response, session: Session | None) -> Response:
    """Set the cookies this request created or renewed, and the security headers."""
    secure = is_tls(request)
    if "ma_new_csrf" in request.scope:
        response.set_cookie(csrf.COOKIE, request.scope["ma_new_csrf"],
                            **cookie_options(secure, None))
    if session is not None and session.renewed_token:
        response.set_cookie(COOKIE, session.renewed_token, **cookie_options(secure, None))
    return secure_headers(response)


def render(request: Request, template: str, session: Session | None,
           context: Mapping[str, Any] | None = None, status: int = 200) -> Response:
    """An HTML page from ``template`` in the request's language."""
    lang = language(request)
    html = ENV.get_template(template).render(
        _=lang.gettext, gettext=lang.gettext, ngettext=lang.ngettext, lang=lang,
        session=session, csrf_field=csrf.FIELD, csrf_value=csrf_token(request),
        admin_roles=ADMIN_ROLES, path=request.url.path, **(context or {}))
    return finish(request, HTMLResponse(html, status_code=status), session)


async def durably(call: Callable[..., Any], *args: Any) -> Any:
    """``call(*args)`` in a worker thread with the AuditEvents of its FHIR interactions
    queued (``audit.deferred``), then awaited on the event loop before the page is sent, as
    the REST API does (``web/fhir_api.handle_durably``): a chart's dozen reads share the audit
    writer's group commits instead of waiting for one durable commit each. The page still
    leaves only once every event is durable; if one cannot be written, an error (fail
    closed)."""

    def run() -> tuple[Any, list[Any], BaseException | None]:
        with deferred() as tickets:
            try:
                return call(*args), tickets, None
            except Exception as exc:  # re-raised below, once the events are durable
                return None, tickets, exc

    result, tickets, error = await run_in_threadpool(run)
    try:
        for ticket in tickets:
            await ticket.wait_async()
    except Exception:
        log.critical("audit trail write failed; refusing a page (%s)",
                     getattr(call, "__qualname__", call), exc_info=True)
        raise UiError(500, ["the audit trail could not be written; the request was "
                            "refused"]) from None
    if error is not None:
        raise error
    return result


def redirect(request: Request, url: str, session: Session | None = None) -> Response:
    """303 See Other to ``url`` (after a POST: RFC 9110 §15.4.4)."""
    return finish(request, RedirectResponse(url, status_code=303), session)


async def checked_form(request: Request) -> dict[str, str]:
    """The POSTed form after the CSRF checks (403 otherwise); repeated names: the last wins."""
    media = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise BadRequest("forms must be sent as application/x-www-form-urlencoded")
    body = (await request.body()).decode("utf-8", "replace")
    fields = dict(parse_qsl(body, keep_blank_values=True))
    csrf.check(request.cookies.get(csrf.COOKIE), fields.get(csrf.FIELD),
               request.headers, request.headers.get("host", ""))
    return fields
