"""FhirRequest -> FhirResponse: the FHIR RESTful API without any HTTP framework.

The router maps a path and method to an interaction (R4 §3.1.0 RESTful API, the summary table
of http.html), parses what the interaction needs (ids, bodies, If-Match, Prefer, result
parameters) and renders the result, or the ``FhirError`` raised on the way, as a response. It is
what HTTP, batch entries and the CLI share, so every way in behaves the same. Search, history
and Bundles live in ``service.search`` and ``service.batch``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson

from medarchive.errors import (
    BadRequest,
    FhirError,
    Gone,
    Issue,
    MethodNotAllowed,
    NotFound,
    NotImplementedYet,
    operation_outcome,
)
from medarchive.fhir.bundle import etag
from medarchive.fhir.compartments import COMPARTMENTS
from medarchive.fhir.patch import JSON_PATCH, patch_from_binary
from medarchive.fhir.summary import Subsetter, parse_elements, parse_summary
from medarchive.service.headers import (
    JSON_CONTENT,
    JSON_TYPES,
    check_body_type,
    http_date,
    parse_etag,
    parse_http_date,
    prefer_return,
    response_type,
)
from medarchive.service.repository import Repository, Written, check_id
from medarchive.service.request import FhirRequest, FhirResponse, decode_json, error_response
from medarchive.settings import Settings
from medarchive.store.base import Version

FORM = "application/x-www-form-urlencoded"
PATCH_TYPES = JSON_TYPES | {JSON_PATCH}


class NotAllowed(MethodNotAllowed):
    """405 with the methods the path does allow (RFC 9110 §15.5.6: send Allow)."""

    def __init__(self, method: str, allow: str) -> None:
        self.allow = allow
        super().__init__(f"{method} is not allowed here; allowed: {allow}")


@dataclass(frozen=True, slots=True)
class View:
    """How to present resources: ``_pretty``, ``_summary``, ``_elements`` and content type."""

    pretty: bool = False
    summary: str | None = None
    elements: frozenset[str] | None = None
    content_type: str = JSON_CONTENT

    @property
    def whole(self) -> bool:
        """True when resources go out exactly as stored."""
        return self.elements is None and self.summary in (None, "false")


PLAIN = View()


@dataclass(frozen=True, slots=True)
class Limits:
    """The request limits the router enforces (from Settings)."""

    max_request_bytes: int
    max_bundle_entries: int
    max_json_depth: int
    default_page_size: int
    max_page_size: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits configured in ``settings``."""
        return cls(settings.max_request_bytes, settings.max_bundle_entries,
                   settings.max_json_depth, settings.default_page_size, settings.max_page_size)


class Router:
    """Dispatches FHIR interactions; ``handle`` never raises a FhirError, it renders it."""

    def __init__(self, repository: Repository, *, base: str, limits: Limits,
                 capability: Callable[[], dict[str, Any]] | None = None) -> None:
        from medarchive.service.batch import BundleProcessor
        from medarchive.service.search import Searches

        self.repository = repository
        self.spec = repository.spec
        self.base = base.rstrip("/")
        self.limits = limits
        self.subsetter = Subsetter(self.spec)
        self.searches = Searches(self, repository)
        self.bundles = BundleProcessor(self, repository)
        self._capability = capability
        self._capability_cache: bytes | None = None
        self.guard: Any = None  # security.guard.Guard, installed by the composition root
        # GET AuditEvent/<id>[/_history[/<version>]] from the audit trail (security on):
        # path parts after the type -> the resource (security.audit_reads.answer)
        self.audit_events: Callable[[list[str]], dict[str, Any]] | None = None
        # GET AuditEvent?... and POST AuditEvent/_search from the audit trail (security on):
        # search parameters -> the searchset Bundle (security.audit_reads.search)
        self.audit_search: Callable[[list[tuple[str, str]]], dict[str, Any]] | None = None
        # extended operations installed by the composition root, by name ("$export"):
        # handler(request, resource type or None, id or None) -> FhirResponse
        self.operations: dict[str, Callable[[FhirRequest, str | None, str | None],
                                            FhirResponse]] = {}

    # -- entry points ---------------------------------------------------------------------

    def handle(self, request: FhirRequest, actor: Any = None) -> FhirResponse:
        """Run one interaction and return its response; errors become OperationOutcomes.
        With a guard (security on) the interaction is authorized and audited as ``actor``
        (a ``security.actor.Actor``; default the one already bound, else the system)."""
        if self.guard is not None:
            response: FhirResponse = self.guard.run(self._handle, request, actor, error_response)
            return response
        return self._handle(request)

    def _handle(self, request: FhirRequest) -> FhirResponse:
        try:
            return self.route(request)
        except NotAllowed as exc:
            return error_response(exc, {"Allow": exc.allow})
        except FhirError as exc:
            return error_response(exc)

    def route(self, request: FhirRequest) -> FhirResponse:
        """Like ``handle`` but lets FhirErrors propagate (for callers that want them)."""
        path = request.path.strip("/")
        parts = path.split("/") if path else []
        method = request.method.upper()
        if method == "HEAD":  # a GET whose body the transport drops (RFC 9110 §9.3.2)
            method = "GET"
        if not parts:
            return self._system(request, method)
        first = parts[0]
        if len(parts) == 1:
            if first == "metadata":
                return self._metadata(request, method)
            if first == "_history":
                self._allow(method, "GET")
                return self.searches.history(request, None, None)
            if first in self.operations:
                return self.operations[first](request, None, None)
            if first.startswith("$"):
                raise NotImplementedYet(f"operation {first} is not supported")
            if first == "AuditEvent" and self.audit_search is not None and method == "GET":
                return FhirResponse(200, resource=self.audit_search(list(request.query)))
            return self._type(request, method, self.repository.check_type(first))
        rtype = self.repository.check_type(first)
        second = parts[1]
        if rtype == "AuditEvent" and self.audit_search is not None and parts[1:] == ["_search"]:
            self._allow(method, "POST")
            return FhirResponse(200, resource=self.audit_search(self._form_params(request)))
        if rtype == "AuditEvent" and self.audit_events is not None and method == "GET" \
                and not second.startswith(("_", "$")) and parts[2:3] in ([], ["_history"]):
            return FhirResponse(200, resource=self.audit_events(parts[1:]))
        if len(parts) == 2:
            if second == "_search":
                self._allow(method, "POST")
                return self.searches.search(request, rtype, self._form_params(request))
            if second == "_history":
                self._allow(method, "GET")
                return self.searches.history(request, rtype, None)
            if second == "$validate":
                return self._validate(request, method, rtype, None)
            if second in self.operations:
                return self.operations[second](request, rtype, None)
            if second == "$everything" and rtype == "Patient":  # type level: every patient
                self._allow(method, "GET")
                return self.searches.everything(request, None)
            if second.startswith("$"):
                raise NotImplementedYet(f"operation {second} is not supported")
            return self._instance(request, method, rtype, check_id(second))
        rid = check_id(second)
        third = parts[2]
        if len(parts) == 3 and third == "_history":
            self._allow(method, "GET")
            return self.searches.history(request, rtype, rid)
        if len(parts) == 3 and third == "$validate":
            return self._validate(request, method, rtype, rid)
        if len(parts) == 3 and third in self.operations:
            return self.operations[third](request, rtype, rid)
        if len(parts) == 3 and third == "$everything" and rtype == "Patient":
            self._allow(method, "GET")
            return self.searches.everything(request, rid)
        if len(parts) == 3 and rtype in COMPARTMENTS and (
                third == "*" or self.spec.is_resource_type(third)):
            self._allow(method, "GET")
            return self.searches.compartment(request, rtype, rid, third)
        if len(parts) == 3 and third.startswith("$"):
            raise NotImplementedYet(f"operation {third} is not supported")
        if len(parts) == 4 and third == "_history":
            self._allow(method, "GET")
            return self._vread(request, rtype, rid, parts[3])
        if len(parts) == 4 and parts[3] == "_search" and rtype in COMPARTMENTS and (
                third == "*" or self.spec.is_resource_type(third)):
            self._allow(method, "POST")  # R4 §3.1.1.1: POST [Compartment]/[id]/[type]/_search
            return self.searches.compartment(request, rtype, rid, third,
                                             self._form_params(request))
        raise NotFound(f"no FHIR interaction at {path[:200]!r}")

    # -- helpers --------------------------------------------------------------------------

    @staticmethod
    def _allow(method: str, allow: str) -> None:
        if method not in allow.split(", "):
            raise NotAllowed(method, allow)

    def view(self, request: FhirRequest, rtype: str | None = None,
             params: Sequence[tuple[str, str]] | None = None) -> View:
        """The presentation asked for by result parameters (``params``, default the query) and
        Accept (R4 §3.1.1.5.9-10)."""
        accept = request.header("accept")
        params = request.query if params is None else params
        if not params and (accept is None or accept in ("*/*", "application/fhir+json")):
            return PLAIN
        pretty = False
        summary = elements = fmt = None
        for name, value in params:
            if name == "_pretty":
                pretty = value == "true"
            elif name == "_summary":
                summary = parse_summary(value)
            elif name == "_elements":
                elements = parse_elements(value, rtype)
            elif name == "_format":
                fmt = value
        return View(pretty, summary, elements, response_type(fmt, accept))

    def shape(self, resource: dict[str, Any], view: View) -> dict[str, Any]:
        """Apply ``_summary``/``_elements`` to one resource."""
        if view.summary not in (None, "false", "count"):
            return self.subsetter.summarize(resource, view.summary)  # type: ignore[arg-type]
        if view.elements is not None:
            return self.subsetter.select(resource, view.elements)
        return resource

    def body(self, request: FhirRequest) -> Any:
        """The parsed JSON body (or the pre-parsed entry resource)."""
        if request.resource is not None:
            return request.resource
        check_body_type(request.header("content-type"))
        return decode_json(request.body, max_depth=self.limits.max_json_depth,
                           max_bytes=self.limits.max_request_bytes)

    def _form_params(self, request: FhirRequest) -> list[tuple[str, str]]:
        """URL parameters plus a form-encoded body (R4 Search §3.1.1.2: POST _search)."""
        params = list(request.query)
        if request.body:
            media = (request.header("content-type") or "").split(";")[0].strip().lower()
            if media != FORM:
                raise BadRequest(f"POST _search needs a {FORM} body")
            try:
                text = request.body.decode()
            except UnicodeDecodeError:
                raise BadRequest("the form body is not UTF-8") from None
            params += parse_qsl(text, keep_blank_values=True)
        return params

    def _if_match(self, request: FhirRequest) -> int | None:
        value = request.header("if-match")
        return parse_etag(value) if value else None

    def _if_none_exist(self, request: FhirRequest) -> list[tuple[str, str]] | None:
        value = request.header("if-none-exist")
        if value is None:
            return None
        query = value.split("?", 1)[1] if "?" in value else value
        return parse_qsl(query, keep_blank_values=True)

    @staticmethod
    def version_headers(version: Version) -> dict[str, str]:
        """ETag and Last-Modified of a version (R4 §3.1.0.5, §3.1.0.2)."""
        return {"ETag": etag(version.version_id), "Last-Modified": http_date(version.last_updated)}

    def written(self, request: FhirRequest, written: Written, message: str) -> FhirResponse:
        """The response to a write, honouring ``Prefer: return=`` (R4 §3.1.0.8)."""
        view = self.view(request)
        version = written.version
        if version is None:
            return FhirResponse(204, headers={}, content_type=view.content_type)
        headers = self.version_headers(version)
        if written.status == 201:
            headers["Location"] = (f"{self.base}/{version.resource_type}/{version.id}"
                                   f"/_history/{version.version_id}")

        def respond(status: int, **content: Any) -> FhirResponse:
            return FhirResponse(status, headers=headers, content_type=view.content_type,
                                version=version, pretty=view.pretty, **content)
        wanted = prefer_return(request.header("prefer"))
        if version.deleted:
            if wanted == "minimal":
                return respond(204)
            wanted = "OperationOutcome"
        if wanted == "minimal":
            return respond(written.status)
        if wanted == "OperationOutcome":
            outcome = operation_outcome([Issue("informational", message, "information")])
            return respond(written.status, resource=outcome)
        return respond(written.status, body=version.body)  # the stored bytes: no re-encoding

    # -- system and type level ------------------------------------------------------------

    def _system(self, request: FhirRequest, method: str) -> FhirResponse:
        if method == "GET":
            return self.searches.search(request, None, list(request.query))
        self._allow(method, "GET, POST")
        view = self.view(request)
        outcome = self.bundles.process(self.body(request), prefer=request.header("prefer"))
        return FhirResponse(200, resource=outcome, pretty=view.pretty,
                            content_type=view.content_type)

    def _metadata(self, request: FhirRequest, method: str) -> FhirResponse:
        """capabilities (R4 §3.1.0.13): the CapabilityStatement; ``mode`` full/normative/terse
        all return the full statement."""
        self._allow(method, "GET")
        mode = request.param("mode")
        if mode not in (None, "full", "normative", "terse"):
            raise BadRequest(f"mode must be full, normative or terse, not {mode!r}")
        if self._capability_cache is None:
            if self._capability is None:
                from medarchive.service.capability import capability_statement
                today = self.repository.now().date().isoformat()
                statement = capability_statement(self.spec, self.base, date=today)
            else:
                statement = self._capability()
            self._capability_cache = orjson.dumps(statement)
        view = self.view(request)
        return FhirResponse(200, body=self._capability_cache, pretty=view.pretty,
                            content_type=view.content_type)

    def _type(self, request: FhirRequest, method: str, rtype: str) -> FhirResponse:
        if method == "GET":
            return self.searches.search(request, rtype, list(request.query))
        if method == "POST":
            written = self.repository.create(self.body(request), rtype,
                                             if_none_exist=self._if_none_exist(request))
            return self.written(request, written, "created" if written.status == 201
                                else "an existing resource matched If-None-Exist")
        params = [(k, v) for k, v in request.query if k not in ("_format", "_pretty")]
        if method == "PUT":
            written = self.repository.conditional_update(
                self.body(request), rtype, params, if_match=self._if_match(request))
            return self.written(request, written, "updated")
        if method == "DELETE":
            written = self.repository.conditional_delete(rtype, params)
            return self.written(request, written, "deleted")
        if method == "PATCH":
            written = self.repository.conditional_patch(
                self._patch_body(request), rtype, params, if_match=self._if_match(request))
            return self.written(request, written, "patched")
        raise NotAllowed(method, "GET, POST, PUT, PATCH, DELETE")

    # -- instance level -------------------------------------------------------------------

    def _instance(self, request: FhirRequest, method: str, rtype: str,
                  rid: str) -> FhirResponse:
        if method == "GET":
            return self._read(request, rtype, rid)
        if method == "PUT":
            written = self.repository.update(self.body(request), rtype, rid,
                                             if_match=self._if_match(request))
            return self.written(request, written, "created" if written.status == 201
                                else "updated")
        if method == "PATCH":
            written = self.repository.patch(self._patch_body(request), rtype, rid,
                                            if_match=self._if_match(request))
            return self.written(request, written, "patched")
        if method == "DELETE":
            written = self.repository.delete(rtype, rid, if_match=self._if_match(request))
            return self.written(request, written, f"deleted {rtype}/{rid}")
        raise NotAllowed(method, "GET, PUT, PATCH, DELETE")

    def _read(self, request: FhirRequest, rtype: str, rid: str) -> FhirResponse:
        """read (R4 §3.1.0.2), with conditional read (If-None-Match / If-Modified-Since -> 304).
        Without result parameters the stored bytes go out untouched."""
        view = self.view(request, rtype)
        version = self.repository.current(rtype, rid)
        if version is None:
            raise NotFound(f"{rtype}/{rid} not found")
        if version.deleted:
            raise Gone(f"{rtype}/{rid} was deleted")
        headers = self.version_headers(version)
        if request.headers and self._not_modified(request, version):
            return FhirResponse(304, headers=headers, content_type=view.content_type)
        if view.whole:
            return FhirResponse(200, body=version.body, headers=headers, pretty=view.pretty,
                                content_type=view.content_type, version=version)
        if view.summary == "count":
            raise BadRequest("_summary=count applies to searches only")
        return FhirResponse(200, resource=self.shape(version.resource(), view), headers=headers,
                            pretty=view.pretty, content_type=view.content_type, version=version)

    @staticmethod
    def _not_modified(request: FhirRequest, version: Version) -> bool:
        none_match = request.header("if-none-match")
        if none_match:
            tags = [t.strip() for t in none_match.split(",")]
            return "*" in tags or any(parse_etag(t) == version.version_id for t in tags if t)
        since = request.header("if-modified-since")
        if since:
            moment = parse_http_date(since)
            return moment is not None and version.last_updated.replace(microsecond=0) <= moment
        return False

    def _vread(self, request: FhirRequest, rtype: str, rid: str, vid: str) -> FhirResponse:
        """vread (R4 §3.1.0.3)."""
        if not vid.isdigit() or len(vid) > 18:
            raise BadRequest(f"invalid version id {vid[:40]!r}")
        view = self.view(request, rtype)
        version = self.repository.vread(rtype, rid, int(vid))
        headers = self.version_headers(version)
        if view.whole:
            return FhirResponse(200, body=version.body, headers=headers, pretty=view.pretty,
                                content_type=view.content_type, version=version)
        return FhirResponse(200, resource=self.shape(version.resource(), view), headers=headers,
                            pretty=view.pretty, content_type=view.content_type, version=version)

    def _patch_body(self, request: FhirRequest) -> Any:
        """A JSON Patch document; FHIRPath Patch (a Parameters body) is 501."""
        if request.resource is not None:
            return patch_from_binary(request.resource)
        check_body_type(request.header("content-type"), PATCH_TYPES)
        value = decode_json(request.body, max_depth=self.limits.max_json_depth,
                            max_bytes=self.limits.max_request_bytes)
        if isinstance(value, dict) and value.get("resourceType") == "Parameters":
            raise NotImplementedYet("FHIRPath Patch is not supported; send a JSON Patch "
                                    f"({JSON_PATCH})")
        if not isinstance(value, list):
            raise BadRequest(f"PATCH needs a JSON Patch document ({JSON_PATCH})")
        return value

    def _validate(self, request: FhirRequest, method: str, rtype: str,
                  rid: str | None) -> FhirResponse:
        """$validate (R4 §3.1.0.15, OperationDefinition Resource-validate). Validation that
        could be performed answers 200 with every issue found, errors included; 4xx means the
        request itself was unusable (no resource, wrong type)."""
        self._allow(method, "POST")
        if self.repository.validator is None:
            raise NotImplementedYet("no validator is configured on this server")
        body = self.body(request)
        mode = request.param("mode")
        resource = body
        if isinstance(body, dict) and body.get("resourceType") == "Parameters":
            resource = None
            for parameter in body.get("parameter", []):
                if not isinstance(parameter, dict):
                    continue
                if parameter.get("name") == "resource":
                    resource = parameter.get("resource")
                elif parameter.get("name") == "mode":
                    mode = parameter.get("valueCode") or parameter.get("valueString")
                elif parameter.get("name") == "profile":
                    raise NotImplementedYet("validation against a named profile is not "
                                            "supported")
        if mode not in (None, "create", "update", "delete"):
            raise BadRequest(f"$validate mode must be create, update or delete, not {mode!r}")
        issues: list[Issue] = []
        if mode == "delete":
            if rid is None:
                raise BadRequest("$validate mode=delete needs an instance URL")
            self.repository.read(rtype, rid)
        else:
            resource = self.repository.check_resource(resource, rtype)
            if mode == "update" and rid is not None and resource.get("id") != rid:
                issues.append(Issue("invalid", f"the resource id must be {rid!r} to update "
                                    f"{rtype}/{rid}", expression=(f"{rtype}.id",)))
            issues += self.repository.validate(resource)
        view = self.view(request)
        return FhirResponse(200, resource=operation_outcome(issues), pretty=view.pretty,
                            content_type=view.content_type)
