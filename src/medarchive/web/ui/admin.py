"""Administration pages: dashboard, users and roles, audit trail, break-the-glass grants and
events.

Administrators see the dashboard (counts and admissions per day, each count an audited FHIR
search) and the user list; auditors, the only role the security policy lets search AuditEvent,
see the audit trail and its break-the-glass subset through ``audit_search``, which checks that
permission and audits the search itself, and the break-the-glass grants (security.access).
The user list is read from the security layer's accounts and recorded in the trail as a read
of the accounts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from medarchive.security.audit_events import audit_event
from medarchive.web.auth_routes import audit_search
from medarchive.web.ui.clinic import Clinic, UiError
from medarchive.web.ui.pages import Ui, durably, render
from medarchive.web.ui.session import Session

COUNTED = ("Patient", "Encounter", "Observation", "Condition", "MedicationRequest",
           "AllergyIntolerance", "DocumentReference", "ImagingStudy")
DAYS = 30
AUDIT_PAGE = 500
BREAK_GLASS = ("BTG", "break-glass", "break the glass", "emergency access")


def require(session: Session, *roles: str) -> None:
    if session.secured and session.role not in roles:
        raise UiError(403, ["this page is for: " + ", ".join(roles)])


def dashboard_data(clinic: Clinic, today: Any) -> dict[str, Any]:
    """Counts per resource type and admissions (inpatient encounters) per day, last 30 days."""
    counts = {name: clinic.count(name, []) for name in COUNTED}
    since = (today - timedelta(days=DAYS - 1)).isoformat()
    admitted = clinic.search("Encounter", [("class", "IMP"), ("date", f"ge{since}")],
                             limit=5000)
    per_day: Counter[str] = Counter()
    for encounter in admitted:
        start = str((encounter.get("period") or {}).get("start", ""))[:10]
        if start >= since:
            per_day[start] += 1
    days = [(today - timedelta(days=n)).isoformat() for n in range(DAYS - 1, -1, -1)]
    return {"counts": counts, "admissions": [(d[5:], float(per_day[d])) for d in days],
            "total": sum(counts.values())}


def matches(event: dict[str, Any], filters: dict[str, str]) -> bool:
    """True when an AuditEvent passes the page's filters (user, action, outcome, date)."""
    who = " ".join(a.get("who", {}).get("identifier", {}).get("value", "")
                   for a in event.get("agent", ()))
    action = " ".join(s.get("code", "") for s in event.get("subtype", ()))
    recorded = str(event.get("recorded", ""))
    checks = [
        (filters.get("user"), lambda v: v.lower() in who.lower()),
        (filters.get("action"), lambda v: v == action or v in action.split()),
        (filters.get("outcome"), lambda v: v == event.get("outcome")),
        (filters.get("since"), lambda v: recorded[:10] >= v),
        (filters.get("until"), lambda v: recorded[:10] <= v),
        (filters.get("text"), lambda v: v.lower() in str(event).lower()),
    ]
    return all(check(value) for value, check in checks if value)


def is_break_glass(event: dict[str, Any]) -> bool:
    """Emergency-access events: purpose of use BTG (HL7 v3 ActReason) or so described."""
    text = str(event).lower()
    return any(word.lower() in text for word in BREAK_GLASS)


def _utc(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def admin_routes(ui: Ui) -> dict[str, Callable[[Request, Session], Awaitable[Response]]]:
    """Paths and pages of the administration area."""
    security = ui.services.security

    async def dashboard(request: Request, session: Session) -> Response:
        require(session, "administrator")
        clinic = Clinic(ui.router, session.actor if session.secured else None)
        today = ui.services.repository.now().date()
        data = await durably(dashboard_data, clinic, today)
        return render(request, "admin_dashboard.html", session, data)

    def read_users(session: Session) -> list[Any]:
        users = security.accounts.users()
        security.trail.record(audit_event(session.actor, "search", security.trail.now(),
                                          status=200, query="sec_user (web UI user list)",
                                          count=len(users)))
        return list(users)

    async def users(request: Request, session: Session) -> Response:
        require(session, "administrator")
        found = [] if security is None else await run_in_threadpool(read_users, session)
        return render(request, "admin_users.html", session, {"users": found})

    def trail(session: Session, after: int, only_break_glass: bool,
              filters: dict[str, str]) -> tuple[list[tuple[int, dict[str, Any]]], int | None]:
        bundle = audit_search(security, session.actor,
                              [("_count", str(AUDIT_PAGE)), ("_after", str(after))],
                              security.tokens.issuer)
        events = [(int(e["resource"]["id"]), e["resource"]) for e in bundle.get("entry", ())]
        more = events[-1][0] if len(events) == AUDIT_PAGE else None
        shown = [(seq, ev) for seq, ev in events if matches(ev, filters)
                 and (not only_break_glass or is_break_glass(ev))]
        return shown, more

    def read_grants(session: Session) -> list[dict[str, Any]]:
        """Break-the-glass grants, newest first, with whether each is still active; the
        reading is itself audited."""
        now = int(security.trail.now().timestamp())
        found = [{**g.to_json(), "active": g.expires > now, "granted": _utc(g.granted),
                  "expires": _utc(g.expires)} for g in security.access.grants(limit=AUDIT_PAGE)]
        security.trail.record(audit_event(session.actor, "search", security.trail.now(),
                                          status=200, count=len(found),
                                          query="sec_break_glass (web UI break-glass grants)"))
        return found

    def audit_page(template: str, only_break_glass: bool) -> Callable[
            [Request, Session], Awaitable[Response]]:
        async def page(request: Request, session: Session) -> Response:
            require(session, "auditor")
            if security is None:
                raise UiError(404, ["the audit trail is off (MEDARCHIVE_AUTH=off)"])
            filters = {k: request.query_params.get(k, "").strip()
                       for k in ("user", "action", "outcome", "since", "until", "text")}
            try:
                after = max(int(request.query_params.get("after", "0")), 0)
            except ValueError:
                after = 0
            events, more = await run_in_threadpool(trail, session, after, only_break_glass,
                                                   filters)
            grants = await run_in_threadpool(read_grants, session) if only_break_glass else []
            return render(request, template, session, {
                "events": events, "more": more, "after": after, "filters": filters,
                "grants": grants})
        return page

    return {"/admin": dashboard, "/admin/users": users,
            "/admin/audit": audit_page("admin_audit.html", False),
            "/admin/break-glass": audit_page("admin_break_glass.html", True)}
