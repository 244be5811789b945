"""Route lookup by literal path prefix, so a request is matched only against the routes that
can take it.

Starlette's router tries its routes in order, one regular expression each. With security on,
the OAuth, break-the-glass, Bulk Data and AuditEvent routes come before the FHIR catch-all, so
every FHIR read was matched against 16 routes before reaching its own. ``RouteIndex`` is one
route standing for a list of routes: it files each route under the literal segments its path
template starts with (``/fhir/AuditEvent/{id:int}`` under ``fhir/AuditEvent``, ``/fhir/{path:path}``
under ``fhir``) and tries, in the original order, only those whose literal segments begin the
request's path; the others cannot match it. Which route answers a request is unchanged: the
first full match in the original order, else the first partial one (405), else not found.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Match, Mount, NoMatchFound, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send


def literal_segments(route: BaseRoute) -> tuple[str, ...]:
    """The whole path segments before the first parameter of ``route``'s path template; ()
    for routes without a path (a Host), which are tried for every request."""
    if not isinstance(route, Route | Mount | WebSocketRoute):
        return ()
    segments: list[str] = []
    for segment in route.path.split("/")[1:]:
        if "{" in segment:
            break
        segments.append(segment)
    return tuple(segments)


class _Node:
    """The routes filed under one literal prefix, and the longer prefixes below it."""

    __slots__ = ("candidates", "children")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.candidates: list[BaseRoute] = []  # of this prefix and every shorter one, in order


class RouteIndex(BaseRoute):
    """``routes`` as one route (see the module docstring). The matched route is put in the
    scope (``scope["route"]``, as Starlette's router does) and handles the request."""

    def __init__(self, routes: Sequence[BaseRoute]) -> None:
        self.routes = list(routes)
        self._root = _Node()
        filed: dict[tuple[str, ...], list[int]] = {}
        for number, route in enumerate(self.routes):
            filed.setdefault(literal_segments(route), []).append(number)
        for prefix in filed:  # every node on the way to a filed prefix
            node = self._root
            for segment in prefix:
                node = node.children.setdefault(segment, _Node())
        self._fill(self._root, (), filed)
        self._depth = max(map(len, filed), default=0)

    def _fill(self, node: _Node, prefix: tuple[str, ...],
              filed: dict[tuple[str, ...], list[int]]) -> None:
        numbers = sorted(n for length in range(len(prefix) + 1)
                         for n in filed.get(prefix[:length], ()))
        node.candidates = [self.routes[n] for n in numbers]
        for segment, child in node.children.items():
            self._fill(child, (*prefix, segment), filed)

    def candidates(self, path: str) -> list[BaseRoute]:
        """The routes, in order, whose literal segments begin ``path``."""
        node = self._root
        for segment in path.split("/", self._depth + 1)[1:self._depth + 1]:
            child = node.children.get(segment)
            if child is None:
                break
            node = child
        return node.candidates

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        partial: tuple[Match, Scope] | None = None
        for route in self.candidates(get_route_path(scope)):
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                return match, {**child_scope, "route": route}
            if match is Match.PARTIAL and partial is None:
                partial = match, {**child_scope, "route": route}
        return partial or (Match.NONE, {})

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await scope["route"].handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        for route in self.routes:
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                pass
        raise NoMatchFound(name, path_params)
