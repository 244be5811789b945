"""Batch and transaction Bundles (R4 §3.1.0.11 "batch/transaction").

Entries are processed in the order the spec sets: DELETE, then POST, then PUT/PATCH, then GET
(§3.1.0.11.2); responses keep the order of the request. A **batch** runs each entry through the
router on its own, so one failing entry only fails itself. A **transaction** is all or nothing:
every identity is resolved first (new ids for POSTs, conditional create/update/delete searches),
then ``urn:uuid:``/``urn:oid:`` fullUrls and conditional references (``Patient?identifier=x|y``)
are rewritten in every Reference of every resource, then all Changes are built and handed to the
store in ONE write. Any failure writes nothing and answers an OperationOutcome naming the entry.
GET entries of a transaction are answered after the write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import orjson

from medarchive.errors import (
    AlreadyApplied,
    BadRequest,
    Conflict,
    FhirError,
    NotFound,
    NotImplementedYet,
    PayloadTooLarge,
    PreconditionFailed,
    VersionConflict,
)
from medarchive.fhir.bundle import bundle, etag, instant, rewrite_references
from medarchive.fhir.patch import apply_json_patch, patch_from_binary
from medarchive.service.headers import parse_etag, prefer_return
from medarchive.service.repository import check_id
from medarchive.service.request import FhirRequest, FhirResponse, error_response
from medarchive.store.base import Change, Version

if TYPE_CHECKING:
    from medarchive.service.repository import Repository
    from medarchive.service.router import Router

ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
PLACEHOLDER_PREFIXES = ("urn:uuid:", "urn:oid:")
ENTRY_HEADERS = (("ifMatch", "if-match"), ("ifNoneExist", "if-none-exist"),
                 ("ifNoneMatch", "if-none-match"), ("ifModifiedSince", "if-modified-since"))


def status_line(status: int) -> str:
    """``Bundle.entry.response.status``: the code and its reason phrase."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def name_entry(index: int, item: Item | None, error: FhirError) -> FhirError:
    """``error`` with every issue saying which entry failed (Bundle.entry[n])."""
    what = f"Bundle.entry[{index}]"
    if item is not None:
        what += f" ({item.method} {item.url})"
    issues = [replace(issue, diagnostics=f"{what}: {issue.diagnostics}",
                      expression=(f"Bundle.entry[{index}]", *issue.expression))
              for issue in error.issues]
    named = FhirError(str(error), issues=issues, status=error.status, code=error.code)
    return named


@dataclass
class Item:
    """One request entry, parsed."""

    index: int
    method: str
    url: str
    rtype: str | None
    rid: str | None
    params: list[tuple[str, str]] | None  # the search part of a conditional URL
    resource: Any
    full_url: str | None
    if_match: int | None
    if_none_exist: list[tuple[str, str]] | None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Step:
    """What a transaction decided for one entry."""

    status: int = 200
    change: Change | None = None
    version: Version | None = None  # an existing version (matched If-None-Exist)
    target: tuple[str, str] | None = None
    current: Version | None = None  # the target's current version, when phase 1 found it
    known: bool = False  # phase 1 knows the current version: ``current`` (None: a new id)
    resource: dict[str, Any] | None = None


class BundleProcessor:
    """Runs batch and transaction Bundles for one router."""

    def __init__(self, router: Router, repository: Repository) -> None:
        self.router = router
        self.repository = repository

    # -- entry parsing --------------------------------------------------------------------

    def _split_url(self, url: str) -> tuple[str, list[tuple[str, str]]]:
        base = self.router.base + "/"
        if url.startswith(base):
            url = url[len(base):]
        elif "://" in url.split("?")[0]:
            raise BadRequest(f"entry URL {url[:120]!r} is not on this server")
        path, _, query = url.partition("?")
        return path.strip("/"), parse_qsl(query, keep_blank_values=True)

    def _item(self, index: int, entry: Any) -> Item:
        if not isinstance(entry, dict) or not isinstance(entry.get("request"), dict):
            raise BadRequest("the entry has no request")
        request = entry["request"]
        method = str(request.get("method", "")).upper()
        url = request.get("url")
        if method not in ORDER or not isinstance(url, str) or not url:
            raise BadRequest("entry.request needs a method (GET, POST, PUT, PATCH, DELETE, "
                             "HEAD) and a url")
        path, query = self._split_url(url)
        parts = path.split("/") if path else []
        rtype = rid = params = None
        if method != "GET" and method != "HEAD":
            if not parts:
                raise BadRequest("Bundles cannot be nested in a batch or transaction")
            rtype = self.repository.check_type(parts[0])
            if any(part.startswith("$") for part in parts):
                raise NotImplementedYet(f"operations ({url[:80]}) are not supported in a batch "
                                        "or transaction")
            if len(parts) == 2:
                rid = check_id(parts[1])
            elif len(parts) > 2:
                raise BadRequest(f"{method} {url[:120]!r} is not an interaction URL")
            if method == "POST" and rid is not None:
                raise BadRequest("POST creates: its url is the resource type only")
            if method != "POST" and rid is None:
                params = query
                if not params:
                    raise BadRequest(f"{method} needs an id or search criteria in its url")
        headers = {name: str(request[key]) for key, name in ENTRY_HEADERS if request.get(key)}
        if_match = parse_etag(headers["if-match"]) if "if-match" in headers else None
        if_none_exist = None
        if "if-none-exist" in headers:
            text = headers["if-none-exist"]
            if_none_exist = parse_qsl(text.split("?", 1)[1] if "?" in text else text,
                                      keep_blank_values=True)
        resource = entry.get("resource")
        if method in ("POST", "PUT") and rtype is not None:
            resource = self.repository.check_resource(resource, rtype)
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        return Item(index, method, url, rtype, rid, params, resource, full_url, if_match,
                    if_none_exist, headers)

    # -- entry points ---------------------------------------------------------------------

    def process(self, value: Any, *, prefer: str | None = None,
                idempotency_key: str | None = None) -> dict[str, Any]:
        """Run a batch or transaction Bundle and return the response Bundle; a failed
        transaction raises (R4 §3.1.0.11)."""
        if not isinstance(value, dict) or value.get("resourceType") != "Bundle":
            raise BadRequest("POST to the base needs a Bundle of type batch or transaction")
        kind = value.get("type")
        if kind not in ("batch", "transaction"):
            raise BadRequest(f"Bundle type {kind!r} cannot be processed here; batch and "
                             "transaction can (store other Bundles with POST /Bundle)")
        entries = value.get("entry", [])
        if not isinstance(entries, list):
            raise BadRequest("Bundle.entry must be a list")
        limit = self.router.limits.max_bundle_entries
        if len(entries) > limit:
            raise PayloadTooLarge(f"the Bundle has {len(entries)} entries; at most {limit} are "
                                  "accepted")
        wanted = prefer_return(prefer, default="minimal")
        if kind == "batch":
            return self._batch(entries, wanted, idempotency_key)
        return self._transaction(entries, wanted, idempotency_key)

    # -- responses ------------------------------------------------------------------------

    def _entry(self, response: FhirResponse, method: str, wanted: str) -> dict[str, Any]:
        result: dict[str, Any] = {"status": status_line(response.status)}
        version = response.version
        if version is not None:
            if method in ("POST", "PUT", "PATCH") or response.status == 201:
                result["location"] = (f"{version.resource_type}/{version.id}/_history/"
                                      f"{version.version_id}")
            result["etag"] = etag(version.version_id)
            result["lastModified"] = instant(version.last_updated)
        entry: dict[str, Any] = {}
        if response.status >= 400:
            result["outcome"] = response.as_resource()
        elif method in ("GET", "HEAD") or wanted == "representation":
            if response.body is not None:
                entry["resource"] = orjson.Fragment(response.body)
            elif response.resource is not None:
                entry["resource"] = response.resource
        elif wanted == "OperationOutcome" and response.resource is not None:
            result["outcome"] = response.resource
        if version is not None and "resource" in entry:
            entry["fullUrl"] = f"{self.router.base}/{version.resource_type}/{version.id}"
            entry = {"fullUrl": entry.pop("fullUrl"), **entry}
        entry["response"] = result
        return entry

    # -- batch ----------------------------------------------------------------------------

    def _batch(self, entries: list[Any], wanted: str, key: str | None) -> dict[str, Any]:
        """Each entry on its own (R4 §3.1.0.11.1); failures become that entry's outcome."""
        if key is not None and self.repository.store.applied(key):
            raise AlreadyApplied(key)
        # Entries always ask for the representation: _entry() drops what ``wanted`` excludes,
        # and a delete then reports 200 with its ETag, as in a transaction.
        prefer = "return=" + ("OperationOutcome" if wanted == "OperationOutcome"
                              else "representation")
        results: list[dict[str, Any] | None] = [None] * len(entries)
        methods = [self._method(e) for e in entries]
        for index in sorted(range(len(entries)), key=lambda i: (ORDER.get(methods[i], 9), i)):
            try:
                item = self._item(index, entries[index])
                resource = item.resource
                if item.method in ("POST", "PUT") and isinstance(resource, dict):
                    resource = orjson.loads(orjson.dumps(resource))
                    rewrite_references(resource, self._resolver({}, {}, placeholders=False))
                path, query = self._split_url(item.url)
                request = FhirRequest(item.method, path, tuple(query),
                                      {**item.headers, "prefer": prefer}, resource=resource)
                response = self.router.handle(request)
            except FhirError as exc:
                response = error_response(exc)
            results[index] = self._entry(response, methods[index], wanted)
        if key is not None:
            self.repository.commit([], idempotency_key=key)
        return bundle("batch-response", [r for r in results if r is not None])

    @staticmethod
    def _method(entry: Any) -> str:
        request = entry.get("request") if isinstance(entry, dict) else None
        return str(request.get("method", "")).upper() if isinstance(request, dict) else ""

    # -- transaction ----------------------------------------------------------------------

    def _resolver(self, mapping: dict[str, str], cache: dict[str, str],
                  placeholders: bool) -> Callable[[str], str | None]:
        """Maps a reference to its target: fullUrls of entries, conditional references."""
        def resolve(reference: str) -> str | None:
            found = mapping.get(reference)
            if found is not None:
                return found
            if placeholders and reference.startswith(PLACEHOLDER_PREFIXES):
                raise BadRequest(f"reference {reference!r} names no entry of this transaction")
            head, mark, query = reference.partition("?")
            if not mark or not head[:1].isupper() or "/" in head:
                return None
            if reference not in cache:
                rtype = self.repository.check_type(head)
                params = parse_qsl(query, keep_blank_values=True)
                hits = self.repository.find(rtype, params, what="conditional reference")
                if len(hits) != 1:
                    raise PreconditionFailed(f"conditional reference {reference!r} matched "
                                             f"{'no' if not hits else 'more than one'} resource")
                cache[reference] = f"{rtype}/{hits[0].id}"
            return cache[reference]
        return resolve

    def _identify(self, item: Item, step: Step, mapping: dict[str, str]) -> None:
        """Phase 1: which resource each entry acts on (R4 §3.1.0.11.2)."""
        repo = self.repository
        rtype = item.rtype
        assert rtype is not None
        rid = item.rid
        if item.params is not None:
            hits = repo.find(rtype, item.params, what=f"conditional {item.method.lower()}")
            if len(hits) > 1:
                raise PreconditionFailed(f"conditional {item.method} matched more than one "
                                         "resource")
            if hits:
                rid = hits[0].id
                step.current, step.known = hits[0], True
            elif item.method == "PATCH":
                raise NotFound("conditional patch matched no resource")
            elif item.method == "DELETE":
                step.status = 204
                return
            else:  # conditional update creating: at the body id, else a new one
                rid = item.resource.get("id")
                if not rid:
                    rid, step.known = repo.new_id(), True
            if item.method == "PUT" and item.resource.get("id") not in (None, rid):
                raise BadRequest(f"resource id {item.resource.get('id')!r} differs from the "
                                 f"matched {rtype}/{rid}")
        elif item.method == "POST":
            if item.if_none_exist is not None:
                hits = repo.find(rtype, item.if_none_exist, what="If-None-Exist")
                if len(hits) > 1:
                    raise PreconditionFailed("If-None-Exist matched more than one resource")
                if hits:
                    step.version = hits[0]
                    rid = hits[0].id
            if rid is None:
                rid = repo.new_id()
        elif item.method == "PUT" and item.resource.get("id") != rid:
            raise BadRequest(f"the resource id {item.resource.get('id')!r} must equal the "
                             f"URL id {rid!r}")
        assert rid is not None
        step.target = (rtype, rid)
        if item.full_url and item.method in ("POST", "PUT"):
            mapping[item.full_url] = f"{rtype}/{rid}"

    def _build(self, item: Item, step: Step, when: datetime) -> None:
        """Phase 3: the Change for one entry, on a fresh read of its target (a conditional
        update reuses the version its search just read, or knows a new id has none; a change
        made in between still fails the store's version check, and the transaction is planned
        again)."""
        repo = self.repository
        if step.target is None or step.version is not None:
            return
        rtype, rid = step.target
        if item.method == "DELETE":
            step.change = repo.change_for_delete(repo.current(rtype, rid), item.if_match, when)
            step.status = 200 if step.change else 204
        elif item.method == "POST":
            step.change = repo.change_for_write(step.resource or {}, rid, None, None, when)
            step.status = 201
        elif item.method == "PUT":
            current = step.current if step.known else repo.current(rtype, rid)
            step.change = repo.change_for_write({**(step.resource or {}), "id": rid}, rid,
                                                current, item.if_match, when)
            step.status = 201 if current is None or current.deleted else 200
        elif item.method == "PATCH":
            current = repo.read(rtype, rid)
            patched = apply_json_patch(current.resource(), patch_from_binary(item.resource))
            repo.check_resource(patched, rtype)
            if patched.get("id") != rid:
                raise BadRequest("a patch may not change the resource id")
            step.change = repo.change_for_write(patched, rid, current, item.if_match, when)
            step.status = 200

    def _plan(self, items: list[Item]) -> list[Step]:
        steps = [Step() for _ in items]
        mapping: dict[str, str] = {}
        targets: dict[tuple[str, str], int] = {}
        writes = [i for i in items if i.method not in ("GET", "HEAD")]
        for item in writes:
            try:
                self._identify(item, steps[item.index], mapping)
            except FhirError as exc:
                raise name_entry(item.index, item, exc) from None
            target = steps[item.index].target
            if target is not None and steps[item.index].version is None:
                if target in targets:
                    raise name_entry(item.index, item, BadRequest(
                        f"{target[0]}/{target[1]} is also changed by Bundle.entry"
                        f"[{targets[target]}]; a transaction may change a resource once"))
                targets[target] = item.index
        resolve = self._resolver(mapping, {}, placeholders=True)
        for item in writes:
            if item.method in ("POST", "PUT") and steps[item.index].version is None:
                try:
                    resource = orjson.loads(orjson.dumps(item.resource))
                    rewrite_references(resource, resolve)
                except FhirError as exc:
                    raise name_entry(item.index, item, exc) from None
                steps[item.index].resource = resource
        when = self.repository.now()
        for item in sorted(writes, key=lambda i: (ORDER[i.method], i.index)):
            try:
                self._build(item, steps[item.index], when)
            except FhirError as exc:
                raise name_entry(item.index, item, exc) from None
        return steps

    def _transaction(self, entries: list[Any], wanted: str, key: str | None) -> dict[str, Any]:
        """All entries or none (R4 §3.1.0.11.2)."""
        items = []
        for index, entry in enumerate(entries):
            try:
                items.append(self._item(index, entry))
            except FhirError as exc:
                raise name_entry(index, None, exc) from None
        retries = self.repository.retries
        for attempt in range(retries):
            steps = self._plan(items)
            changes = [s.change for s in steps if s.change is not None]
            try:
                if changes or key is not None:
                    written = self.repository.commit(changes, idempotency_key=key)
                else:
                    written = []
                break
            except VersionConflict as exc:
                for item, step in zip(items, steps, strict=True):
                    if step.target == (exc.resource_type, exc.resource_id) \
                            and item.if_match is not None:
                        raise name_entry(item.index, item, PreconditionFailed(str(exc))) \
                            from None
                self.repository.backoff(attempt)
        else:
            raise Conflict(f"the transaction kept conflicting with other writers; gave up after "
                           f"{retries} attempts")
        by_change = {id(c): v for c, v in zip(changes, written, strict=True)}
        results = []
        for item, step in zip(items, steps, strict=True):
            if item.method in ("GET", "HEAD"):
                path, query = self._split_url(item.url)
                response = self.router.handle(FhirRequest(item.method, path, tuple(query),
                                                          item.headers))
            else:
                version = by_change.get(id(step.change)) if step.change else step.version
                resource = step.change.resource if step.change else None
                response = FhirResponse(step.status, resource=resource, version=version,
                                        body=version.body if version and resource is None
                                        and not version.deleted else None)
            results.append(self._entry(response, item.method, wanted))
        return bundle("transaction-response", results)
