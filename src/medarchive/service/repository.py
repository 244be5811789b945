"""CRUD and versioning on top of a Store: the one place where writes are decided.

The repository turns interactions into ``Change``s (R4 §3.1.0 RESTful API: create, update,
patch, delete and their conditional forms), stamps ``meta.versionId``/``meta.lastUpdated``,
validates what is about to be stored and hands the changes to the store in one atomic write.
Optimistic locking comes from the store (``VersionConflict``); here a plain update is retried
on a fresh read, while a client that named a version with If-Match gets 412 instead. Reads raise
404 for unknown and 410 for deleted resources. Time and ids are injected so tests are
deterministic. Authorization hooks in here (house rule 6) through ``guard`` (security.guard):
visibility of loaded versions, search narrowing inside the query, and checks on every commit.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import orjson

from medarchive.errors import (
    BadRequest,
    Conflict,
    Gone,
    Issue,
    NotFound,
    PreconditionFailed,
    Unprocessable,
    VersionConflict,
)
from medarchive.fhir.bundle import instant
from medarchive.fhir.patch import apply_json_patch
from medarchive.fhir.search.parse import parse_search
from medarchive.fhir.search.query import SearchQuery
from medarchive.store.base import Change, HistoryQuery, Store, Version

ID_PATTERN = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
Validator = Callable[[dict[str, Any]], Sequence[Issue]]
Params = Sequence[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Written:
    """What a write did. ``status`` is 201 (created), 200 (updated, deleted or matched an
    existing resource) or 204 (nothing to do); ``version`` is None only for 204."""

    status: int
    version: Version | None
    resource: dict[str, Any] | None = None


def check_id(id: str) -> str:
    """A logical id: 1-64 of ``A-Z a-z 0-9 - .`` (R4 §2.24.0.1 id); otherwise 400."""
    if not ID_PATTERN.match(id):
        raise BadRequest(f"invalid resource id {id[:80]!r}: 1-64 characters of A-Z, a-z, 0-9, "
                         "'-' and '.'")
    return id


def _is_error(issue: Issue) -> bool:
    return issue.severity in ("error", "fatal")


class Repository:
    """Reads and writes of FHIR resources with versioning, validation and conflict handling."""

    def __init__(self, store: Store, spec: Any, *, new_id: Callable[[], str],
                 now: Callable[[], datetime], validator: Validator | None = None,
                 validate_writes: bool = True, retries: int = 12,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.store = store
        self.spec = spec
        self.new_id = new_id
        self.now = now
        self.validator = validator
        self.validate_writes = validate_writes and validator is not None
        self.retries = retries
        self._sleep = sleep
        self.guard: Any = None  # security.guard.Guard: authorization hooks (security on)

    # -- checks ---------------------------------------------------------------------------

    def check_type(self, resource_type: str) -> str:
        """404 unless ``resource_type`` is an R4 resource type (R4 §3.1.0.1 "Service Base URL")."""
        if not self.spec.is_resource_type(resource_type):
            raise NotFound(f"unknown resource type {resource_type[:80]!r}")
        return resource_type

    def check_resource(self, resource: Any, resource_type: str | None = None) -> dict[str, Any]:
        """400 unless ``resource`` is a JSON object of a known type (and ``resource_type``)."""
        if not isinstance(resource, dict):
            raise BadRequest("the body must be a FHIR resource (a JSON object)")
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str):
            raise BadRequest("the resource has no resourceType")
        if not self.spec.is_resource_type(rtype):
            raise BadRequest(f"{rtype[:80]!r} is not an R4 resource type")
        if resource_type is not None and rtype != resource_type:
            raise BadRequest(f"resourceType {rtype} does not match the URL type {resource_type}")
        if "meta" in resource and not isinstance(resource["meta"], dict):
            raise BadRequest("meta must be an object", expression=(f"{rtype}.meta",))
        if "id" in resource and not (isinstance(resource["id"], str)
                                     and ID_PATTERN.match(resource["id"])):
            raise BadRequest("invalid id in the resource", expression=(f"{rtype}.id",))
        return resource

    def validate(self, resource: dict[str, Any]) -> list[Issue]:
        """All issues the validator finds (R4 §3.1.0.15 / $validate); empty without one."""
        return list(self.validator(resource)) if self.validator else []

    def _enforce(self, resource: dict[str, Any]) -> None:
        if self.validate_writes:
            issues = self.validate(resource)
            if any(_is_error(i) for i in issues):
                raise Unprocessable(issues=[i for i in issues if i.severity != "information"])

    # -- reads ----------------------------------------------------------------------------

    def current(self, resource_type: str, id: str) -> Version | None:
        """The current version, deletion markers included; None if never created (or not
        visible to the acting patient-scoped actor)."""
        version = self.store.read(resource_type, id)
        if self.guard is not None and not self.guard.visible(version):
            return None
        return version

    def read(self, resource_type: str, id: str) -> Version:
        """The current version (R4 §3.1.0.2 read): 404 if never created, 410 if deleted."""
        version = self.current(resource_type, id)
        if version is None:
            raise NotFound(f"{resource_type}/{id} not found")
        if version.deleted:
            raise Gone(f"{resource_type}/{id} was deleted")
        return version

    def vread(self, resource_type: str, id: str, version_id: int) -> Version:
        """One version (R4 §3.1.0.3 vread): 404 if unknown, 410 if it is a deletion."""
        version = self.store.vread(resource_type, id, version_id)
        if self.guard is not None and not self.guard.visible(version):
            version = None
        if version is None:
            raise NotFound(f"{resource_type}/{id}/_history/{version_id} not found")
        if version.deleted:
            raise Gone(f"{resource_type}/{id} version {version_id} is a deletion")
        return version

    def search(self, query: SearchQuery) -> list[Version]:
        """Matching current resources (R4 §3.1.1), narrowed inside the query to what the
        acting actor may see (house rule 6)."""
        return self.store.search(self.narrow(query))

    def narrow(self, query: SearchQuery) -> SearchQuery:
        """``query`` with the authorization predicates of the acting actor added."""
        return self.guard.narrow(query) if self.guard is not None else query

    def count(self, query: SearchQuery, limit: int | None = None) -> int:
        """How many resources match (Bundle.total, R4 §3.1.1.3), narrowed like ``search``;
        ``limit`` as in ``Store.count``."""
        return self.store.count(self.narrow(query), limit)

    def history(self, query: HistoryQuery) -> list[Version]:
        """Versions newest first (R4 §3.1.0.9 history)."""
        return self.store.history(query)

    def history_total(self, query: HistoryQuery) -> int:
        """How many versions the history query covers."""
        return self.store.history_total(query)

    def last_seq(self) -> int:
        """The store's latest change sequence number (pins history paging)."""
        return self.store.last_seq()

    def find(self, resource_type: str, params: Params, *, what: str) -> list[Version]:
        """Up to two current resources matching ``params``: enough to tell none, one or many
        for conditional interactions (R4 §3.1.0.4.2, §3.1.0.7.1, §3.1.0.8.1). Unknown
        parameters and empty criteria are 400: ignoring them would match too much."""
        parsed = parse_search(self.spec, resource_type, params, default_count=2, max_count=2)
        if parsed.unknown:
            raise BadRequest(f"{what}: unknown search parameter(s) {', '.join(parsed.unknown)}")
        if not parsed.query.predicates:
            raise BadRequest(f"{what} needs search criteria")
        return self.store.search(self.narrow(replace(parsed.query, count=2, offset=0,
                                                     sort=())))

    # -- building changes -----------------------------------------------------------------

    def stamp(self, resource: dict[str, Any], id: str, version_id: int,
              when: datetime) -> dict[str, Any]:
        """The resource as stored: server id and meta.versionId/lastUpdated, the client's
        meta.tag/profile/security/source kept (R4 §2.28.0.1 Meta)."""
        meta = resource.get("meta") or {}
        kept = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        stored: dict[str, Any] = {
            "resourceType": resource["resourceType"], "id": id,
            "meta": {"versionId": str(version_id), "lastUpdated": instant(when), **kept}}
        for key, value in resource.items():
            if key not in stored:
                stored[key] = value
        return stored

    def change_for_write(self, resource: dict[str, Any], id: str, current: Version | None,
                         if_match: int | None = None, when: datetime | None = None) -> Change:
        """The Change that stores ``resource`` as the next version of ``id`` (``when``: the
        transaction's one timestamp, default now)."""
        rtype = resource["resourceType"]
        if if_match is not None and (current is None or current.version_id != if_match):
            found = "no version" if current is None else f"version {current.version_id}"
            raise PreconditionFailed(f"If-Match version {if_match} does not match: {rtype}/{id}"
                                     f" has {found}")
        version_id = current.version_id + 1 if current else 1
        when = when or self.now()
        stored = self.stamp(resource, id, version_id, when)
        self._enforce(stored)
        return Change(rtype, id, version_id, current.version_id if current else 0, when,
                      False, orjson.dumps(stored), stored)

    def change_for_delete(self, current: Version | None, if_match: int | None = None,
                          when: datetime | None = None) -> Change | None:
        """The deletion Change for ``current``; None when there is nothing to delete."""
        if if_match is not None and (current is None or current.version_id != if_match):
            raise PreconditionFailed(f"If-Match version {if_match} does not match the current "
                                     "version")
        if current is None or current.deleted:
            return None
        return Change(current.resource_type, current.id, current.version_id + 1,
                      current.version_id, when or self.now(), True, b"", None)

    def commit(self, changes: Sequence[Change], *,
               idempotency_key: str | None = None) -> list[Version]:
        """Write all changes atomically (the store raises VersionConflict, writing nothing);
        every change must be allowed for the acting actor (transaction entries included)."""
        if self.guard is not None:  # the AuditEvent goes into the same transaction
            self.guard.check_changes(changes, self.store.read)
            return self.guard.write(self.store, changes, idempotency_key)
        return self.store.write(changes, idempotency_key=idempotency_key)

    def backoff(self, attempt: int) -> None:
        """Wait a little, more after each lost race, so retrying writers spread out."""
        self._sleep(random.uniform(0, 0.001 * (attempt + 1)))

    def _retrying(self, attempt: Callable[[], Written], if_match: int | None,
                  what: str) -> Written:
        for number in range(self.retries):
            try:
                return attempt()
            except VersionConflict as exc:
                if if_match is not None:
                    raise PreconditionFailed(f"{what}: {exc}") from None
                self.backoff(number)
        raise Conflict(f"{what}: the resource kept changing; gave up after {self.retries} "
                       "attempts")

    def _write(self, change: Change, created: bool) -> Written:
        version = self.commit([change])[0]
        return Written(201 if created else 200, version, change.resource)

    def _store_next(self, resource: dict[str, Any], id: str, if_match: int | None) -> Written:
        current = self.store.read(resource["resourceType"], id)
        change = self.change_for_write(resource, id, current, if_match)
        return self._write(change, created=current is None or current.deleted)

    # -- interactions ---------------------------------------------------------------------

    def create(self, resource: Any, resource_type: str, *,
               if_none_exist: Params | None = None) -> Written:
        """create (R4 §3.1.0.4): a new id, version 1; conditional with If-None-Exist
        (§3.1.0.4.2): one match -> 200 with it, several -> 412, none -> create."""
        resource = self.check_resource(resource, resource_type)
        if if_none_exist is not None:
            found = self.find(resource_type, if_none_exist, what="If-None-Exist")
            if len(found) > 1:
                raise PreconditionFailed("If-None-Exist matched more than one resource")
            if found:
                return Written(200, found[0])
        return self._retrying(
            lambda: self._write(self.change_for_write(resource, self.new_id(), None), True),
            None, f"create {resource_type}")

    def update(self, resource: Any, resource_type: str, id: str, *,
               if_match: int | None = None) -> Written:
        """update (R4 §3.1.0.5): body id must equal the URL id (400); a new id is an
        update-as-create (201); a concurrent writer makes us re-read and retry unless the
        client named a version (If-Match), which then fails with 412."""
        check_id(id)
        resource = self.check_resource(resource, resource_type)
        if resource.get("id") != id:
            raise BadRequest(f"the resource id {resource.get('id')!r} must equal the URL id "
                             f"{id!r}", expression=(f"{resource_type}.id",))
        return self._retrying(lambda: self._store_next(resource, id, if_match), if_match,
                              f"update {resource_type}/{id}")

    def conditional_update(self, resource: Any, resource_type: str, params: Params, *,
                           if_match: int | None = None) -> Written:
        """Conditional update (R4 §3.1.0.5.1): none -> create (at the body id if given),
        one -> update it (body id, if any, must agree), several -> 412."""
        resource = self.check_resource(resource, resource_type)
        found = self.find(resource_type, params, what="conditional update")
        if len(found) > 1:
            raise PreconditionFailed("conditional update matched more than one resource")
        body_id = resource.get("id")
        if found:
            if body_id is not None and body_id != found[0].id:
                raise BadRequest(f"resource id {body_id!r} differs from the matched "
                                 f"{resource_type}/{found[0].id}")
            return self.update({**resource, "id": found[0].id}, resource_type, found[0].id,
                               if_match=if_match)
        if body_id is not None:
            return self.update(resource, resource_type, body_id, if_match=if_match)
        return self.create(resource, resource_type)

    def patch(self, operations: Any, resource_type: str, id: str, *,
              if_match: int | None = None) -> Written:
        """patch with JSON Patch (R4 §3.1.0.7); the result must keep its type and id."""
        check_id(id)

        def attempt() -> Written:
            current = self.read(resource_type, id)
            patched = apply_json_patch(current.resource(), operations)
            self.check_resource(patched, resource_type)
            if patched.get("id") != id:
                raise BadRequest("a patch may not change the resource id")
            return self._write(self.change_for_write(patched, id, current, if_match), False)
        return self._retrying(attempt, if_match, f"patch {resource_type}/{id}")

    def conditional_patch(self, operations: Any, resource_type: str, params: Params, *,
                          if_match: int | None = None) -> Written:
        """Conditional patch (R4 §3.1.0.7.1): exactly one match is patched; none 404, many 412."""
        found = self.find(resource_type, params, what="conditional patch")
        if not found:
            raise NotFound("conditional patch matched no resource")
        if len(found) > 1:
            raise PreconditionFailed("conditional patch matched more than one resource")
        return self.patch(operations, resource_type, found[0].id, if_match=if_match)

    def delete(self, resource_type: str, id: str, *, if_match: int | None = None) -> Written:
        """delete (R4 §3.1.0.6): writes a deletion version (history keeps the old ones);
        unknown or already deleted resources give 204 and write nothing."""
        check_id(id)

        def attempt() -> Written:
            change = self.change_for_delete(self.store.read(resource_type, id), if_match)
            if change is None:
                return Written(204, None)
            return Written(200, self.commit([change])[0])
        return self._retrying(attempt, if_match, f"delete {resource_type}/{id}")

    def conditional_delete(self, resource_type: str, params: Params) -> Written:
        """Conditional delete, single mode (R4 §3.1.0.6.1): none -> 204, one -> delete it,
        several -> 412."""
        found = self.find(resource_type, params, what="conditional delete")
        if len(found) > 1:
            raise PreconditionFailed("conditional delete matched more than one resource")
        if not found:
            return Written(204, None)
        return self.delete(resource_type, found[0].id)
