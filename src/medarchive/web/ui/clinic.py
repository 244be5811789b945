"""The UI's way to the record: FHIR interactions through ``Router.handle`` as the user.

Every read, search and write of a page is a ``FhirRequest`` handed to the same router the REST
API uses, with the session's Actor: authorization, validation and one AuditEvent per
interaction happen exactly as for any other client (house rule 6). Errors come back as
``UiError`` carrying the OperationOutcome's messages, ready to show in a form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from medarchive.service.request import FhirRequest
from medarchive.service.router import Router

PAGE = 1000
MAX_PAGES = 20


class UiError(Exception):
    """A refused interaction: HTTP status and the OperationOutcome's diagnostics."""

    def __init__(self, status: int, messages: list[str]) -> None:
        self.status = status
        self.messages = messages
        super().__init__("; ".join(messages))


def messages_of(outcome: Any) -> list[str]:
    """The diagnostics of an OperationOutcome (R4 OperationOutcome.issue), with locations."""
    found = []
    for issue in (outcome or {}).get("issue", []) if isinstance(outcome, dict) else []:
        text = issue.get("diagnostics") or (issue.get("details") or {}).get("text") \
            or issue.get("code", "error")
        where = ", ".join(issue.get("expression") or ())
        found.append(f"{text} ({where})" if where else str(text))
    return found or ["the server refused the request"]


@dataclass
class Clinic:
    """FHIR interactions for one request of one user (``actor``; None when auth is off)."""

    router: Router
    actor: Any

    def _call(self, method: str, path: str, query: tuple[tuple[str, str], ...] = (),
              resource: Any = None) -> Any:
        headers = {"content-type": "application/fhir+json"} if resource is not None else {}
        body = orjson.dumps(resource) if resource is not None else b""
        response = self.router.handle(FhirRequest(method, path, query, headers, body),
                                      self.actor)
        content = response.content()  # search pages hold stored bodies as orjson Fragments
        value = orjson.loads(content) if content else None
        if response.status >= 400:
            raise UiError(response.status, messages_of(value))
        return value

    def read(self, resource_type: str, id: str) -> dict[str, Any]:
        """read (R4 §3.1.0.2)."""
        return dict(self._call("GET", f"{resource_type}/{id}"))

    def search(self, resource_type: str, params: list[tuple[str, str]],
               limit: int = PAGE * MAX_PAGES) -> list[dict[str, Any]]:
        """search (R4 §3.1.1) following ``next`` links until ``limit`` resources."""
        query = tuple(params)
        if not any(name == "_count" for name, _ in params):
            query += (("_count", str(min(limit, PAGE))),)
        found: list[dict[str, Any]] = []
        for _ in range(MAX_PAGES):
            bundle = self._call("GET", resource_type, query)
            found += [e["resource"] for e in bundle.get("entry", ())
                      if e.get("search", {}).get("mode", "match") == "match"]
            link = next((x["url"] for x in bundle.get("link", ()) if x["relation"] == "next"),
                        None)
            if link is None or len(found) >= limit:
                break
            query = tuple(parse_qsl(urlsplit(link).query, keep_blank_values=True))
        return found[:limit]

    def page(self, resource_type: str, params: list[tuple[str, str]],
             count: int) -> tuple[list[dict[str, Any]], int]:
        """The first ``count`` matches of a search and how many match in all (its Bundle's
        ``total``)."""
        bundle = self._call("GET", resource_type, (*params, ("_count", str(count))))
        found = [e["resource"] for e in bundle.get("entry", ())
                 if e.get("search", {}).get("mode", "match") == "match"]
        return found, int(bundle.get("total", len(found)))

    def count(self, resource_type: str, params: list[tuple[str, str]]) -> int:
        """How many match (``_summary=count``, R4 §3.1.1.5.8)."""
        bundle = self._call("GET", resource_type, (*params, ("_summary", "count")))
        return int(bundle.get("total", 0))

    def history(self, resource_type: str, id: str) -> list[dict[str, Any]]:
        """Instance history, newest first (R4 §3.1.0.9)."""
        bundle = self._call("GET", f"{resource_type}/{id}/_history", (("_count", "100"),))
        return [e.get("resource") or {"meta": {}, "deleted": True, **e.get("request", {})}
                for e in bundle.get("entry", ())]

    def create(self, resource: dict[str, Any]) -> dict[str, Any]:
        """create (R4 §3.1.0.4); the stored resource comes back."""
        return dict(self._call("POST", resource["resourceType"], resource=resource))

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """transaction (R4 §3.1.0.11): all entries stored, or none; the response Bundle."""
        return dict(self._call("POST", "", resource=bundle))
