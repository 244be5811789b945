"""The enforcement point: authorization and audit of every FHIR interaction, in one place.

``Guard.run`` wraps the router's entry: it binds the actor, classifies the interaction (R4
§3.1.0 summary table), checks the role x scope permission for its type, runs it, and appends
one AuditEvent with the outcome. If the AuditEvent cannot be written the response is replaced
by a 500 (fail closed). Inside ``audit.deferred`` (the HTTP route) the event is queued and
the caller awaits its commit instead (``web.fhir_api.handle_durably``); with
``audit_read_commit = "group"`` a read is answered once its event is queued, and a lost one
makes every later interaction a 500 (``AuditTrail.failed``). Batch entries re-enter
the router and are authorized and audited one by one under the caller's identity. The
repository calls the instance-level checks: whether a loaded resource is visible to the
actor, whether changes about to be committed (including transaction entries) are allowed,
and the compartment predicate narrowing every search. Granular scopes (``?category=...``,
``security.granular``) take part in all three: their condition is ANDed into every search
(and into its chains and ``_has``), loaded versions outside it are invisible, and changes
outside it are refused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import parse_qsl

import orjson

from medarchive.errors import FhirError, Forbidden
from medarchive.fhir.search.parse import parse_search
from medarchive.fhir.search.query import (
    AllOf,
    AnyOf,
    Chain,
    Clause,
    Compartment,
    Has,
    OfType,
    SearchQuery,
)
from medarchive.security import audit_context
from medarchive.security.actor import SYSTEM, Actor, bind, bound_actor, current_actor, unbind
from medarchive.security.audit import AuditTrail, defer
from medarchive.security.audit_events import audit_event
from medarchive.security.authz import (
    InsufficientScope,
    Policy,
    compartment_params,
    in_compartment,
)
from medarchive.security.granular import NOTHING, Granular, constrained
from medarchive.store.base import Change, Version

log = logging.getLogger(__name__)
PUBLIC = frozenset({"metadata", ".well-known"})
WIDENING = ("_include", "_revinclude", "_has", "_type")
OLD_VERSIONS = frozenset({"vread", "history"})  # interactions that load non-current versions
READS = frozenset({"read", "vread", "search", "history"})  # audit_read_commit applies to these
NESTED = (AnyOf, AllOf, OfType, Chain, Has)  # clauses whose conditions granular scopes confine
LETTER_NAMES = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}


@dataclass(frozen=True, slots=True)
class Interaction:
    """What a request does: interaction name, permission letter (None: decided per entry),
    resource type and id; ``conditional`` when it first searches (needs ``s`` too)."""

    name: str
    letter: str | None
    resource_type: str | None = None
    id: str | None = None
    conditional: bool = False
    public: bool = False


def classify(method: str, path: str, has_if_none_exist: bool = False) -> Interaction:
    """The interaction of a request (R4 §3.1.0, http.html summary table)."""
    method = "GET" if method.upper() == "HEAD" else method.upper()
    parts = [p for p in path.strip("/").split("/") if p]
    if not parts:
        return Interaction("search", "s") if method == "GET" else Interaction("batch", None)
    first = parts[0]
    if first in PUBLIC:
        return Interaction("metadata", None, public=True)
    if first == "_history":
        return Interaction("history", "s")
    if first.startswith("$"):
        return Interaction("operation", "r")
    if len(parts) == 1:
        if method == "GET":
            return Interaction("search", "s", first)
        if method == "POST":
            return Interaction("create", "c", first, conditional=has_if_none_exist)
        if method in ("PUT", "PATCH"):
            return Interaction("update" if method == "PUT" else "patch", "u", first,
                               conditional=True)
        return Interaction("delete", "d", first, conditional=True)
    second = parts[1]
    if second == "_search":
        return Interaction("search", "s", first)
    if second == "_history":
        return Interaction("history", "s", first)
    if second.startswith("$"):
        return Interaction("operation", "r", first)
    if len(parts) == 2:
        name, letter = {"GET": ("read", "r"), "PUT": ("update", "u"), "PATCH": ("patch", "u"),
                        "DELETE": ("delete", "d")}.get(method, ("operation", "r"))
        return Interaction(name, letter, first, second)
    if len(parts) == 4 and parts[2] == "_history":
        return Interaction("vread", "r", first, second)
    if parts[2] == "_history":
        return Interaction("history", "r", first, second)
    return Interaction("operation", "r", first, second)


def bundle_kind(request: Any) -> str:
    """``transaction`` or ``batch``: the interaction of a Bundle POSTed to the base, by its
    ``type`` (anything else is audited as ``batch``; the router answers it)."""
    try:
        body = orjson.loads(getattr(request, "body", b"") or b"{}")
    except orjson.JSONDecodeError:
        return "batch"
    return "transaction" if isinstance(body, dict) and body.get("type") == "transaction" \
        else "batch"


def search_params(request: Any) -> list[tuple[str, str]]:
    """URL parameters plus a form-encoded POST body (``_search``), as the router reads them."""
    params = list(request.query)
    body = getattr(request, "body", b"")
    if request.method.upper() == "POST" and body:
        params += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
    return params


def _search_count(response: Any) -> int | None:
    """How many results a search disclosed: the entries of its page, or the ``total`` of a
    page without entries that states one (``_summary=count``)."""
    body = response.resource
    if isinstance(body, dict) and body.get("resourceType") == "Bundle":
        entries = body.get("entry") or ()
        total = body.get("total")
        return int(total) if not entries and isinstance(total, int) else len(entries)
    return None


class Guard:
    """Authorization (``policy``) and audit (``trail``) for one router and repository."""

    def __init__(self, policy: Policy, trail: AuditTrail, spec: Any) -> None:
        self.granular = Granular(spec)
        if policy.granular is None:  # granular scopes are judged against this spec
            policy = replace(policy, granular=self.granular, _decided={})
        self.policy = policy
        self.trail = trail
        self.spec = spec
        self.abac: Any = None  # security.abac.Abac: labels, relationships, break-the-glass

    # -- router entry ---------------------------------------------------------------------

    def run(self, handle: Callable[[Any], Any], request: Any, actor: Actor | None,
            render_error: Callable[[FhirError], Any]) -> Any:
        """Authorize, run and audit one interaction as ``actor`` (default: the bound one).
        ``request``/``handle`` are the service layer's FhirRequest and router entry (passed
        in: this layer sits below the service); ``render_error`` turns a FhirError into a
        response."""
        who = actor or bound_actor() or SYSTEM
        what = classify(request.method, request.path, request.header("if-none-exist") is not None)
        if what.public:
            return handle(request)
        if what.name == "batch":
            what = replace(what, name=bundle_kind(request))
        if self.trail.failed is not None:  # audit_read_commit = "group" lost an event
            log.critical("audit trail failed; refusing %s %s", request.method, request.path)
            return render_error(FhirError("the audit trail could not be written; requests are "
                                          "refused until the server is restarted"))
        # a batch entry waits for its event: the trail keeps the order of a batch's entries
        early = what.name in READS and audit_context.current_name() is None
        bound = bind(who)  # plain set/reset, not nested with-blocks: this runs per request
        pending, tracking = audit_context.start(who, what.name)
        deciding = arrival = None
        try:
            deciding = self.abac.enter(who) if self.abac is not None else None
            arrival = self.trail.arrive()
            try:
                self.authorize(who, what, request)
                response = handle(request)
            except InsufficientScope as exc:  # RFC 6750 §3.1
                response = render_error(exc)
                response = replace(response, headers={**response.headers,
                                                      "WWW-Authenticate": exc.challenge})
            except FhirError as exc:
                response = render_error(exc)
            except Exception:  # a bug: still audited (outcome 8), details only in the log
                log.exception("unhandled error on %s %s", request.method, request.path)
                response = render_error(FhirError("internal server error; the incident was "
                                                  "logged"))
            entities = []
            if what.resource_type and what.id:
                entities.append(f"{what.resource_type}/{what.id}")
            elif isinstance(response.version, Version):
                entities.append(f"{response.version.resource_type}/{response.version.id}")
            if pending.recorded:  # committed with the write itself (audit_context.write)
                return response
            if what.name in ("read", "vread") and isinstance(response.version, Version):
                pending.patients |= audit_context.patients_of(response.version)
            query = "&".join(f"{k}={v}" for k, v in search_params(request)) \
                if what.letter == "s" else None
            event = audit_event(who, what.name, self.trail.now(), status=response.status,
                                entities=entities, query=query, count=_search_count(response),
                                patients=pending.patients)
            if self.abac is not None:
                self.abac.mark(event)
            try:
                ticket = self.trail.submit(event, early=early)
                if not defer(ticket) and not ticket.early:  # deferred: the HTTP layer awaits
                    ticket.wait()
            except Exception:
                log.critical("audit trail write failed; refusing %s %s", request.method,
                             request.path, exc_info=True)
                return render_error(FhirError("the audit trail could not be written; the "
                                                "request was refused"))
            return response
        finally:
            self.trail.leave(arrival)
            if deciding is not None and self.abac is not None:
                self.abac.leave(deciding)
            audit_context.stop(tracking)
            unbind(bound)

    def authorize(self, actor: Actor, what: Interaction, request: Any) -> None:
        """403 unless ``actor`` may perform ``what`` (type level; instances are checked by
        the repository)."""
        if what.letter is None:
            return
        self.policy.require(actor, what.letter, what.resource_type)
        if self.abac is not None:
            self.abac.authorize(actor, what.name, what.id)
        if what.conditional:
            self.policy.require(actor, "s", what.resource_type)
        if actor.patient_scoped:
            searching = what.letter == "s" or str(getattr(request, "path", "")).rstrip(
                "/").endswith("/_search")  # compartment POST _search is an "operation"
            params = search_params(request) if searching else request.query
            if any(name.split(":")[0] in WIDENING for name, _ in params):
                raise Forbidden("_include, _revinclude, _has and _type are not available to "
                                "patient-scoped actors")
            if what.name == "history" and what.id is None:
                raise Forbidden("patient-scoped actors may not read type or system history")
            if what.name == "search" and what.resource_type is None:
                raise Forbidden("patient-scoped actors may not search all resource types")
            if what.name == "operation" and (what.resource_type, what.id) != (
                    "Patient", actor.patient):
                raise Forbidden("patient-scoped actors may only run operations on their own "
                                "Patient (e.g. Patient/<id>/$everything)")

    # -- repository checks ----------------------------------------------------------------

    def write(self, store: Any, changes: Sequence[Change],
              idempotency_key: str | None) -> list[Version]:
        """Store ``changes`` with the interaction's AuditEvent in the same transaction."""
        return audit_context.write(self.trail, store, changes, idempotency_key,
                                   self.abac.mark if self.abac is not None else None)

    def touched(self, versions: Sequence[Version]) -> None:
        """Note the patients of versions a search returns, for its AuditEvent."""
        audit_context.touched(versions)

    def visible(self, version: Version | None) -> bool:
        """True when the current actor may see this loaded version."""
        actor = current_actor()
        if version is not None and constrained(actor.scopes) \
                and not self._granted_version(actor, version):
            return False
        if version is not None and self.abac is not None:
            if not self.abac.visible(version):
                return False
            if audit_context.current_name() in OLD_VERSIONS \
                    and not self.abac.current_labels_allow(version):
                return False
        if version is None or not actor.patient_scoped:
            return True
        if version.deleted:
            return False
        return in_compartment(actor, version.resource())

    def narrow(self, query: SearchQuery) -> SearchQuery:
        """``query`` confined to the actor's patient compartment, inside the query itself."""
        actor = current_actor()
        asked = len(query.predicates)  # the abac clauses appended after these stay as they are
        if self.abac is not None:
            query = self.abac.narrow(query)
        if constrained(actor.scopes):
            query = self._granted(actor, query, asked)
        if not actor.patient_scoped:
            return query
        if query.resource_type is None:  # $everything, Patient/<id>/*: every type at once
            clause = self._compartment(actor, query.types or self.spec.resource_types)
            return replace(query, predicates=(*query.predicates, clause))
        params = self.spec.search_params(query.resource_type)
        extra = compartment_params(actor, query.resource_type, params)
        if not extra:
            return query
        confined = parse_search(self.spec, query.resource_type, extra, default_count=1,
                                max_count=1)
        return replace(query, predicates=query.predicates + confined.query.predicates)

    def _compartment(self, actor: Actor, types: Iterable[str]) -> Compartment:
        """The actor's compartment over several types as one clause: its Patient, and per type
        the parameter that confines a search of that type alone (types without one drop out)."""
        if actor.patient is None:
            raise Forbidden("a patient-scoped actor without a patient context may not search")
        links = []
        for rtype in sorted(types):
            try:
                extra = compartment_params(actor, rtype, self.spec.search_params(rtype))
            except Forbidden:
                continue
            if extra and rtype != "Patient":
                links.append((rtype, extra[0][0]))
        return Compartment("Patient", actor.patient, tuple(links), owner=True)

    def check_changes(self, changes: Sequence[Change],
                      read: Callable[[str, str], Version | None]) -> None:
        """403 unless the actor may make every change (transaction entries included)."""
        actor = current_actor()
        if actor is SYSTEM:
            return
        for change in changes:
            letter = "d" if change.deleted else ("c" if change.expected_version == 0 else "u")
            self.policy.require(actor, letter, change.resource_type)
            if constrained(actor.scopes):
                self._granted_change(actor, letter, change, read)
            if self.abac is not None:
                self.abac.check_change(change, read)
            if not actor.patient_scoped:
                continue
            if change.resource is not None and not in_compartment(actor, change.resource):
                raise Forbidden("patient-scoped actors may only write their own compartment")
            if change.expected_version and not self.visible(read(change.resource_type,
                                                                  change.id)):
                raise Forbidden("patient-scoped actors may only change their own compartment")

    # -- granular scopes (SMART App Launch 2.0 §3.0.2, security.granular) -------------------

    def _granted(self, actor: Actor, query: SearchQuery, asked: int) -> SearchQuery:
        """``query`` confined to the resources the actor's scopes grant search on: their
        condition ANDed in (per type for a query over several types, which is then confined
        to the types the actor may search), and into the conditions of the chains and
        ``_has`` of its first ``asked`` clauses (the request's), so they never test
        resources outside it."""
        if any(isinstance(c, NESTED) for c in query.predicates[:asked]):
            query = replace(query, predicates=tuple(
                self._confined(actor, c) if i < asked else c
                for i, c in enumerate(query.predicates)))
        if query.resource_type is not None:
            clause = self.granular.clause(actor.scopes, "s", query.resource_type)
        else:
            types = self._searchable(actor, query.types)
            clause = self.granular.across(actor.scopes, "s", types) if types else NOTHING
            if clause is not None and types:
                query = replace(query, types=types)
        if clause is None:
            return query
        return replace(query, predicates=(*query.predicates, clause))

    def _searchable(self, actor: Actor, types: Iterable[str]) -> tuple[str, ...]:
        """``types`` (none: every type) that the actor may search."""
        return tuple(t for t in (types or sorted(self.spec.resource_types))
                     if self.policy.allowed(actor, "s", t))

    def _confined(self, actor: Actor, clause: Clause) -> Clause:
        """``clause`` with the actor's search grant on the types its chains and ``_has``
        reach ANDed into their conditions (R4 §3.1.1.5.11-12)."""
        if isinstance(clause, AnyOf | AllOf):
            return type(clause)(tuple(self._confined(actor, c) for c in clause.clauses))
        if isinstance(clause, OfType):
            return OfType(clause.resource_type, self._confined(actor, clause.clause))
        if not isinstance(clause, Chain | Has):
            return clause
        inner = None if clause.clause is None else self._confined(actor, clause.clause)
        rtype = clause.target_type if isinstance(clause, Chain) else clause.source_type
        if rtype is not None:
            grant = self.granular.clause(actor.scopes, "s", rtype)
        else:  # _has from any type ($everything's referenced resources)
            types = self._searchable(actor, ())
            grant = self.granular.across(actor.scopes, "s", types) if types else NOTHING
        if grant is not None:
            inner = grant if inner is None else AllOf((inner, grant))
        if isinstance(clause, Chain):
            assert inner is not None
            return Chain(clause.param, clause.target_type, inner)
        return Has(clause.source_type, clause.param, inner)

    def _granted_version(self, actor: Actor, version: Version) -> bool:
        """True when the actor's scopes grant reading ``version``: it matches their read
        condition and, in a history listing, their search condition on a type the actor may
        search. A deletion has nothing to match and is hidden from constrained grants."""
        letters = ["r"]
        if audit_context.current_name() == "history" \
                and self.policy.allowed(actor, "s", version.resource_type):
            letters.append("s")
        for letter in letters:
            clause = self.granular.clause(actor.scopes, letter, version.resource_type)
            if clause is None:
                continue
            if version.deleted or not self.granular.matches(clause, version.resource()):
                return False
        return True

    def _granted_change(self, actor: Actor, letter: str, change: Change,
                        read: Callable[[str, str], Version | None]) -> None:
        """403 (insufficient scope) unless the new content and, for an update or delete, the
        current version match the condition the actor's scopes put on ``letter``."""
        clause = self.granular.clause(actor.scopes, letter, change.resource_type)
        if clause is None:
            return
        name = LETTER_NAMES[letter]
        if change.resource is not None and not self.granular.matches(clause, change.resource):
            raise InsufficientScope(f"the token's scopes do not allow {name} on this "
                                    f"{change.resource_type}: it does not match their "
                                    "search conditions")
        if change.expected_version:
            current = read(change.resource_type, change.id)
            if current is not None and not current.deleted \
                    and not self.granular.matches(clause, current.resource()):
                raise InsufficientScope(f"the token's scopes do not allow {name} on "
                                        f"{change.resource_type}/{change.id}: it does not "
                                        "match their search conditions")
