"""Route lookup by literal prefix (web/routing.py) answers every request with the route
Starlette's own in-order matching picks: the first full match, else the first partial one
(405), else none; and reverse routing still finds routes by name."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Match, Mount, Route, Router

from medarchive.web.routing import RouteIndex, literal_segments

with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


def answer(name: str) -> Route:
    async def endpoint(request: Request) -> Response:
        return PlainTextResponse(name)
    return endpoint  # type: ignore[return-value]


ROUTES: list[BaseRoute] = [
    Route("/bulk/status/{job}", answer("bulk"), methods=["GET", "DELETE"]),
    Route("/auth/login", answer("login"), methods=["POST"]),
    Route("/fhir/.well-known/smart-configuration", answer("smart"), methods=["GET"]),
    Route("/fhir/AuditEvent", answer("audit-search"), methods=["GET"]),
    Route("/fhir/AuditEvent/{id:int}", answer("audit-read"), methods=["GET"]),
    Route("/fhir", answer("fhir-base"), methods=["GET", "POST"]),
    Route("/fhir/{path:path}", answer("fhir"), methods=["GET", "POST", "PUT"]),
    Route("/", answer("home"), methods=["GET"]),
    Route("/login", answer("login-page"), methods=["GET"]),
    Route("/patients/{id}", answer("chart"), methods=["GET"]),
    Route("/pat{x}", answer("partial-segment"), methods=["GET"]),
    Mount("/ui/static", app=PlainTextResponse("static"), name="static"),
    Route("/{anything}", answer("catch-one"), methods=["GET"]),
]
PATHS = ["/fhir/Patient/p1", "/fhir/Patient", "/fhir", "/fhir/", "/fhir/AuditEvent",
         "/fhir/AuditEvent/7", "/fhir/AuditEvent/x", "/fhir/AuditEvent/7/_history",
         "/fhir/.well-known/smart-configuration", "/fhir/.well-known/other", "/auth/login",
         "/auth/other", "/bulk/status/j1", "/bulk/status", "/", "/login", "/patients/p1",
         "/patients", "/patx", "/ui/static/app.css", "/ui/static", "/ui", "/nothing/here",
         "/FHIR/Patient/p1", "/fhir//Patient", "//x"]
METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH"]


def chosen(routes: list[BaseRoute], method: str, path: str) -> tuple[Match, BaseRoute | None]:
    """What Starlette's router does with ``routes`` in order."""
    scope = {"type": "http", "method": method, "path": path, "root_path": ""}
    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return match, route
        if match is Match.PARTIAL and partial is None:
            partial = route
    return (Match.PARTIAL, partial) if partial is not None else (Match.NONE, None)


def indexed(index: RouteIndex, method: str, path: str) -> tuple[Match, BaseRoute | None]:
    match, child_scope = index.matches({"type": "http", "method": method, "path": path,
                                        "root_path": ""})
    return match, child_scope.get("route")


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", METHODS)
def test_the_same_route_answers(method: str, path: str) -> None:
    assert indexed(RouteIndex(ROUTES), method, path) == chosen(ROUTES, method, path)


@given(st.lists(st.sampled_from(["fhir", "AuditEvent", "7", "", "ui", "static", "login",
                                 ".well-known", "patients", "pat", "bulk", "status"]),
                max_size=5), st.sampled_from(METHODS))
def test_any_path_gets_the_same_route(segments: list[str], method: str) -> None:
    path = "/" + "/".join(segments)
    assert indexed(RouteIndex(ROUTES), method, path) == chosen(ROUTES, method, path)


def test_a_fhir_read_is_matched_against_its_own_routes_only() -> None:
    index = RouteIndex(ROUTES)
    assert [literal_segments(r) for r in index.candidates("/fhir/Patient/p1")] == [
        ("fhir",), ("fhir",), (), ()]  # /fhir, /fhir/{path:path}, /pat{x}, /{anything}
    assert len(index.candidates("/fhir/AuditEvent/7")) == 6


def test_served_through_starlette() -> None:
    client = TestClient(Starlette(routes=[RouteIndex(ROUTES)]))
    assert client.get("/fhir/Patient/p1").text == "fhir"
    assert client.get("/fhir/AuditEvent/7").text == "audit-read"
    assert client.delete("/fhir/Patient/p1").status_code == 405
    assert client.get("/ui/static/app.css").text == "static"
    assert client.get("/a/b/c").status_code == 404
    assert Router(routes=[RouteIndex(ROUTES)]).url_path_for("static", path="/x.css") == \
        "/ui/static/x.css"
