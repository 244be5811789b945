"""The one composition root: Settings -> spec, store, repository, router, ASGI app.

Nothing else in MedArchive builds concrete objects from configuration (house rule 7), so this is
where a reader finds out what runs: the R4 spec tables, the store named by ``database_url`` with
the spec's search indexer, the validator, the repository (with its injected id generator and
clock, so tests are deterministic) and the transport-neutral router behind the HTTP adaptor. The
CLI uses ``build_services``; uvicorn uses ``asgi_factory`` (``--factory``).
"""

from __future__ import annotations

import gc
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette

from medarchive.errors import Issue
from medarchive.service.repository import Repository, Validator
from medarchive.service.router import Limits, Router
from medarchive.settings import Settings, is_loopback, load_settings
from medarchive.store.base import Store

log = logging.getLogger(__name__)
FHIR_PREFIX = "/fhir"


def new_uuid() -> str:
    """Server-assigned logical ids: random UUIDs (R4 §3.1.0.4 create)."""
    return str(uuid.uuid4())


def utc_now() -> datetime:
    """The server clock (UTC) for meta.lastUpdated."""
    return datetime.now(UTC)


def default_validator(spec: Any) -> Validator | None:
    """The R4 validator bound to ``spec``, or None (logged) while it is not installed."""
    try:
        from medarchive.fhir.validate import validate_resource
    except ImportError:
        log.warning("medarchive.fhir.validate is not available: writes are not validated")
        return None

    def validate(resource: dict[str, Any]) -> Sequence[Issue]:
        return validate_resource(resource, spec)  # type: ignore[no-any-return]
    return validate


@dataclass
class Services:
    """The built system: what the CLI and the HTTP app share."""

    settings: Settings
    spec: Any
    store: Store
    repository: Repository
    router: Router
    security: Any = None  # security.service.Security when settings.auth is on
    bulk: Any = None  # service.bulk.runner.BulkExports when serving HTTP (its workers)
    devices: Any = None  # devices.pipeline.Pipeline once built (build_devices)

    def submit(self, bundle: dict[str, Any], idempotency_key: str | None = None
               ) -> dict[str, Any]:
        """Run a batch/transaction Bundle through the service path; a failed transaction and
        a repeated idempotency key (``AlreadyApplied``) raise."""
        return self.router.bundles.process(bundle, idempotency_key=idempotency_key)

    def close(self) -> None:
        """Release the store (connections, pools)."""
        if self.devices is not None:
            self.devices.close()
        if self.bulk is not None:
            self.bulk.close()
        if self.security is not None:
            self.security.close()
        self.store.close()


_DEFAULT: Any = object()


def build_services(settings: Settings, *, store: Store | None = None, spec: Any = None,
                   validator: Validator | None = _DEFAULT,
                   new_id: Callable[[], str] = new_uuid,
                   now: Callable[[], datetime] = utc_now) -> Services:
    """Build every service from ``settings``; tests inject store, validator, ids and clock."""
    if spec is None:
        from medarchive.fhir.spec import load_spec
        spec = load_spec()
    roles = _roles(settings, spec)  # a bad role file stops start-up before anything opens
    if store is None:
        from medarchive.fhir.search.index import build_indexer
        from medarchive.service.search_engine import stored_search_params
        from medarchive.store import open_store

        def opened(spec: Any) -> Store:
            return open_store(settings.database_url, build_indexer(spec),
                              busy_timeout_ms=settings.sqlite_busy_timeout_ms,
                              pool_size=settings.pool_size,
                              encryption=build_encryption(settings, spec))
        store = opened(spec)
        custom = stored_search_params(store, spec)  # SearchParameters kept in the record
        if custom is not spec:  # are indexed and searched like the official ones
            store.close()
            spec, store = custom, opened(custom)
    if validator is _DEFAULT:
        validator = default_validator(spec)
    repository = Repository(store, spec, new_id=new_id, now=now, validator=validator,
                            validate_writes=settings.validate_writes)
    security = _security(settings, store, spec, now, roles)
    capability = None
    if security is not None:  # the CapabilityStatement names SMART (rest.security)
        capability = _secured_capability(spec, settings.public_base() + FHIR_PREFIX, now)
    router = Router(repository, base=settings.public_base() + FHIR_PREFIX,
                    limits=Limits.from_settings(settings), capability=capability)
    if security is not None:  # one guard authorizes and audits every interaction
        repository.guard = router.guard = security.guard
        from medarchive.security.audit_reads import answer, search
        trail, base = security.trail, security.tokens.issuer
        router.audit_events = lambda parts: answer(trail, base, parts)
        router.audit_search = lambda params: search(trail, base, params)  # batch entries
    return Services(settings, spec, store, repository, router, security)


def _secured_capability(spec: Any, fhir_base: str,
                        now: Callable[[], datetime]) -> Callable[[], dict[str, Any]]:
    """A CapabilityStatement builder (for the router) that adds ``rest.security``."""
    from medarchive.security.discovery import rest_security
    from medarchive.service.capability import capability_statement

    def build() -> dict[str, Any]:
        statement = capability_statement(spec, fhir_base, date=now().date().isoformat())
        base = fhir_base.rsplit("/fhir", 1)[0] if fhir_base.endswith("/fhir") else fhir_base
        for rest in statement.get("rest", []):
            rest["security"] = rest_security(base)
        return statement
    return build


def build_gateway(settings: Settings, **inject: Any) -> tuple[Any, Services]:
    """The HL7 v2 gateway (docs/ingestion.md) and the services behind it. On SQL databases the
    gateway's store and its message log share one ``SharedTransaction``, so a message's
    resources, idempotency key and log row commit together, grouped with the messages that
    arrived meanwhile (one fsync for the group). Close with ``gateway.close()`` then
    ``services.close()``."""
    from medarchive.mllp.gateway import Gateway, mapping_config
    from medarchive.mllp.log import MemoryMessageLog, SqlMessageLog
    from medarchive.mllp.merge import PatientMerge
    from medarchive.mllp.transaction import SharedTransaction

    url = settings.database_url
    message_log: Any
    if url.startswith("memory:") or "store" in inject:
        services = build_services(settings, **inject)
        message_log, transactions = MemoryMessageLog(), None
        if not url.startswith("memory:"):
            from medarchive.mllp.log import open_message_log
            message_log = open_message_log(url)
    else:
        from medarchive.fhir.search.index import build_indexer
        from medarchive.store.sql.database import open_database
        from medarchive.store.sql.store import SqlStore
        spec = inject.pop("spec", None)
        if spec is None:
            from medarchive.fhir.spec import load_spec
            spec = load_spec()
        transactions = SharedTransaction(open_database(
            url, busy_timeout_ms=settings.sqlite_busy_timeout_ms, pool_size=settings.pool_size))
        store = SqlStore(transactions, build_indexer(spec),
                         encryption=build_encryption(settings, spec))
        services = build_services(settings, store=store, spec=spec, **inject)
        message_log = SqlMessageLog(transactions, store.keyring)
    try:
        config = mapping_config(services.router, settings.hl7_concept_maps)
    except BaseException:
        message_log.close()
        services.close()
        raise
    submit = services.submit
    if services.security is not None:  # each message's writes commit with their AuditEvent
        from medarchive.security.audit_context import audited
        submit = audited(services.submit)
    gateway = Gateway(submit, message_log, transactions=transactions, config=config,
                      max_group=settings.mllp_group_max,
                      group_wait_ms=settings.mllp_group_wait_ms,
                      merge=PatientMerge(services.store, services.spec, submit))
    return gateway, services


def build_devices(services: Services, *, start: bool = False) -> Any:
    """The device pipeline over ``services`` (docs/ingestion.md "Device readings"): raw readings
    table, landing, materializer (running in a thread when ``start``); kept on
    ``services.devices`` and closed with the services."""
    if services.devices is None:
        from medarchive.devices.pipeline import open_pipeline
        settings = services.settings
        services.devices = open_pipeline(services, batch=settings.device_materialize_batch,
                                         keep_s=settings.device_raw_keep_hours * 3600)
        if start:
            services.devices.materializer.start()
    return services.devices


def build_encryption(settings: Settings, spec: Any) -> Any:
    """Encryption at rest (docs/encryption.md): the KEK manager the settings name and the
    patient-compartment owner of each resource; None when off, and on the memory store."""
    if settings.encryption == "off" or settings.database_url.startswith("memory:"):
        return None
    if settings.encryption != "on":
        raise ValueError(f"setting encryption must be on or off, not {settings.encryption!r}")
    from medarchive.crypto.encryption import Encryption, compartment_owner
    kek: Any
    if settings.encryption_key_manager == "file":
        from medarchive.crypto.kek import LocalKeyFile
        kek = LocalKeyFile(settings.encryption_key_file)
    elif settings.encryption_key_manager == "vault":
        from medarchive.crypto.vault import VaultTransit
        kek = VaultTransit(settings.encryption_vault_url or None,
                           key=settings.encryption_vault_key,
                           mount=settings.encryption_vault_mount)
    else:
        raise ValueError("setting encryption_key_manager must be file or vault, not "
                         f"{settings.encryption_key_manager!r}")
    return Encryption(kek, compartment_owner(spec))


def _roles(settings: Settings, spec: Any) -> Any:
    """The role table (docs/security.md "Roles as data"): the role file checked whole, or
    the built-in roles; logged with the file's sha256. None when auth is not on."""
    if settings.auth != "on":
        return None
    from medarchive.security.roles import install, load_roles
    roles = load_roles(settings.role_file, spec.resource_types)
    install(roles)
    log.info("roles: %s: %s", roles.source(), ", ".join(roles.names()))
    return roles


def _security(settings: Settings, store: Store, spec: Any,
              now: Callable[[], datetime], roles: Any) -> Any:
    """Identity, access control and audit (docs/security.md); None when auth is off."""
    if settings.auth == "off":
        log.warning("MEDARCHIVE_AUTH=off: authentication and authorization are disabled "
                    "(local development only)")
        return None
    if settings.auth != "on":
        raise ValueError(f"setting auth must be on or off, not {settings.auth!r}")
    from medarchive.security.service import build_security
    return build_security(store, spec, issuer=settings.public_base() + FHIR_PREFIX, now=now,
                          token_lifetime_s=settings.access_token_lifetime,
                          relationship_required=settings.access_relationship_required,
                          break_glass_minutes=settings.break_glass_minutes,
                          refresh_lifetime_s=settings.refresh_token_lifetime,
                          online_refresh_lifetime_s=settings.online_refresh_token_lifetime,
                          audit_read_commit=settings.audit_read_commit, roles=roles)


def reads_on_loop(settings: Settings, store: Store) -> bool:
    """Whether reads by id may run on the event loop (setting ``reads_on_event_loop``): only
    where a read does no network I/O, i.e. the store is SQLite (or in memory) and data keys
    are unwrapped locally (a Vault round trip would stall every connection)."""
    db = getattr(store, "db", None)
    local_keys = settings.encryption == "off" or settings.encryption_key_manager == "file"
    return settings.reads_on_event_loop and local_keys and (
        db is None or db.dialect == "sqlite")


def create_app(settings: Settings, *, services: Services | None = None,
               **inject: Any) -> Starlette:
    """The ASGI application: the FHIR REST API under ``/fhir``."""
    from medarchive.web.asgi import build_asgi
    from medarchive.web.fhir_api import fhir_routes

    built = services or build_services(settings, **inject)
    on_loop = reads_on_loop(settings, built.store)
    routes = fhir_routes(built.router, FHIR_PREFIX, reads_on_loop=on_loop)
    if built.security is not None:  # OAuth endpoints first, bearer tokens on the FHIR API
        from medarchive.web.auth_routes import auth_routes, protected_fhir_routes
        routes = auth_routes(built.security, FHIR_PREFIX) + protected_fhir_routes(
            built.router, built.security, FHIR_PREFIX, reads_on_loop=on_loop)
        from medarchive.web.break_glass import break_glass_routes
        routes = break_glass_routes(built.security) + routes
    # -- Bulk Data $export/$import (issue 7; docs/bulk-data.md): before the FHIR catch-all --
    from medarchive.web.bulk_api import install_bulk
    routes = install_bulk(built) + routes
    # -- device readings (issue 6; docs/ingestion.md) --
    from medarchive.web.devices_api import device_routes
    devices = build_devices(built)  # its materializer starts with the app (below)
    routes = routes + device_routes(built)
    # -- the clinician web UI at / (issue 8; docs/ui.md) --
    from medarchive.web.ui.routes import ui_routes
    routes = routes + ui_routes(built, idle_s=settings.ui_idle_timeout)
    if built.security is not None:  # SMART App Launch: authorize/consent pages, EHR launch
        from medarchive.web.ui.authorize import app_routes
        routes = routes + app_routes(built, idle_s=settings.ui_idle_timeout)
    materialize = settings.device_materializer and settings.workers <= 1
    app = build_asgi(routes,
                     max_request_bytes=settings.max_request_bytes, on_shutdown=built.close,
                     worker_threads=settings.worker_threads,
                     on_startup=devices.materializer.start if materialize else None)
    # -- the edge: security headers, CORS, URL/header limits, rate limits, refusal audit
    #    (docs/security.md) --
    from medarchive.web.edge import install_edge
    install_edge(app, settings, built.security)
    app.state.services = built
    return app


def asgi_factory() -> Starlette:
    """For ``uvicorn --factory medarchive.app:asgi_factory``: settings from the environment.
    What start-up built (the R4 spec tables, the services) lives as long as the server, so it
    is moved out of the garbage collector's sight (``gc.freeze``): a full collection then
    scans what requests left behind, not those hundreds of thousands of objects (~45 ms per
    collection, about one every few thousand requests, measured with security on)."""
    settings = load_settings()
    logging.basicConfig(level=settings.log_level.upper())
    if settings.auth == "off" and not is_loopback(settings.host):
        raise RuntimeError("MEDARCHIVE_AUTH=off: refusing to serve on a non-loopback address")
    app = create_app(settings)
    gc.collect()
    gc.freeze()
    return app
