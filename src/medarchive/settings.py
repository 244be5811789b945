"""One registry of every MedArchive setting.

A setting has a name, a type, a default and a help text. Values come, later sources winning, from
the defaults, an optional TOML file (``MEDARCHIVE_CONFIG`` or ``--config``; keys are the setting
names), environment variables (``MEDARCHIVE_`` + the name in upper case) and CLI flags.
``docs/settings.md`` lists them all, and a test fails when one is undocumented.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

ENV_PREFIX = "MEDARCHIVE_"


_INTERVAL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_interval(text: str, setting: str) -> float:
    """An interval setting (``30s``, ``15m``, ``6h``, ``1d``, or a bare number of seconds) in
    seconds; empty: 0 (off). A ValueError naming ``setting`` otherwise."""
    text = text.strip().lower()
    if not text:
        return 0.0
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smhd]?)", text)
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"setting {setting}: expected an interval such as 15m, 6h or 1d, "
                         f"got {text!r}")
    return float(match.group(1)) * _INTERVAL_UNITS[match.group(2) or "s"]


@dataclass(frozen=True)
class Settings:
    """The settings in force; build it with ``load_settings``. Field metadata holds the help."""

    database_url: str = field(
        default="sqlite:///var/medarchive.db",
        metadata={"help": "Database: sqlite:///PATH (embedded, default) or postgresql://..."})
    host: str = field(default="127.0.0.1", metadata={"help": "Address the HTTP server binds to."})
    port: int = field(default=8080, metadata={"help": "Port of the HTTP server."})
    base_url: str = field(
        default="",
        metadata={"help": "Public base URL of the server (for links in Bundles); "
                          "default http://HOST:PORT (https:// with tls_cert)."})
    workers: int = field(default=1, metadata={"help": "HTTP server processes (one per core)."})
    worker_threads: int = field(
        default=8, metadata={"help": "Threads per server process that run database calls."})
    reads_on_event_loop: bool = field(
        default=True,
        metadata={"help": "Serve reads by id (read, vread) on the event loop, not in a worker "
                          "thread, where a read does no network I/O (SQLite with the file key "
                          "manager or encryption off); PostgreSQL and Vault always use a thread."})
    max_request_bytes: int = field(
        default=50 * 1024 * 1024, metadata={"help": "Largest request body accepted, in bytes."})
    max_bundle_entries: int = field(
        default=10_000, metadata={"help": "Most entries accepted in one batch/transaction Bundle."})
    max_json_depth: int = field(
        default=64, metadata={"help": "Deepest JSON nesting accepted in a request body."})
    default_page_size: int = field(
        default=20, metadata={"help": "Search and history page size when _count is not given."})
    max_page_size: int = field(
        default=1000, metadata={"help": "Largest _count honoured; larger values are capped."})
    validate_writes: bool = field(
        default=True, metadata={"help": "Validate every resource against the R4 definitions "
                                        "before it is stored."})
    sqlite_busy_timeout_ms: int = field(
        default=30_000, metadata={"help": "How long a SQLite writer waits for the write lock."})
    pool_size: int = field(
        default=10, metadata={"help": "Connections in the PostgreSQL connection pool."})
    log_level: str = field(default="info", metadata={"help": "Log level: debug, info, warning."})
    # -- security (issue 4; docs/security.md) --
    auth: str = field(
        default="on",
        metadata={"help": "Authentication and authorization: on (default) or off. off is for "
                          "local development only: the server then binds to loopback only."})
    access_token_lifetime: int = field(
        default=3600, metadata={"help": "Lifetime of issued access tokens, in seconds."})
    refresh_token_lifetime: int = field(
        default=2_592_000, metadata={"help": "SMART apps: a refresh token granted with "
                                             "offline_access lasts this many seconds from its "
                                             "issue (each use rotates it; docs/security.md)."})
    online_refresh_token_lifetime: int = field(
        default=43_200, metadata={"help": "SMART apps: the same for online_access refresh "
                                          "tokens (about one working shift)."})
    access_relationship_required: bool = field(
        default=True, metadata={"help": "Physicians, nurses and pharmacists see only patients "
                                        "they have a relationship with (department, care team, "
                                        "encounter, break-the-glass; docs/security.md)."})
    role_file: str = field(
        default="", metadata={"help": "TOML file of roles and their permissions, read at "
                                      "start-up (empty: the built-in roles; docs/security.md "
                                      "\"Roles as data\", medarchive roles show)."})
    break_glass_minutes: int = field(
        default=60, metadata={"help": "How long a break-the-glass grant lasts, in minutes."})
    audit_read_commit: str = field(
        default="wait", metadata={"help": "AuditEvents of reads and searches: wait (the "
                                          "response leaves once the event is durable) or "
                                          "group (once it is queued; committed within 20 ms; "
                                          "docs/security.md \"Cost\")."})
    ui_idle_timeout: int = field(
        default=900, metadata={"help": "Web UI: a session idle for this many seconds ends "
                                       "(docs/ui.md)."})
    # -- the HTTP edge: TLS, CORS, rate limits (issue 4; docs/security.md "Edge") --
    tls_cert: str = field(
        default="", metadata={"help": "PEM certificate (chain) to serve HTTPS with (TLS 1.2+); "
                                      "empty: plain HTTP (e.g. behind a TLS proxy)."})
    tls_key: str = field(
        default="", metadata={"help": "PEM private key for tls_cert (empty when the "
                                      "certificate file holds it)."})
    trusted_proxies: str = field(
        default="127.0.0.1",
        metadata={"help": "Addresses (comma-separated, * for any) of reverse proxies whose "
                          "X-Forwarded-For/-Proto are believed (client address and scheme)."})
    cors_origins: str = field(
        default="", metadata={"help": "Origins (comma-separated, e.g. https://app.example.org; "
                                      "* for any) whose browser apps may call the FHIR API, "
                                      "/auth and /bulk; empty: none."})
    rate_limit_per_client: int = field(
        default=100, metadata={"help": "Requests per second one authenticated client or user "
                                       "may make (token bucket; 0: no limit; auth on only)."})
    rate_limit_per_address: int = field(
        default=200, metadata={"help": "Requests per second one source address may make "
                                       "(token bucket; 0: no limit; auth on only)."})
    rate_limit_burst: int = field(
        default=2, metadata={"help": "Burst a rate limit allows, in seconds' worth of its "
                                     "rate (the token bucket's size)."})
    rate_limit_url: str = field(
        default="", metadata={"help": "redis://HOST:PORT/DB to share rate limits between "
                                      "server processes and hosts; empty: per process."})
    max_url_bytes: int = field(
        default=8192, metadata={"help": "Longest request target (path and query) accepted, "
                                        "in bytes (longer: 414; POST _search instead)."})
    max_header_bytes: int = field(
        default=32768, metadata={"help": "Largest total size of the request headers "
                                         "accepted, in bytes (larger: 431)."})
    # -- HL7 v2 over MLLP (issue 6; docs/ingestion.md) --
    mllp_port: int = field(
        default=0, metadata={"help": "Port of the HL7 v2 MLLP listener (2575 is usual); "
                                     "0 leaves it off."})
    mllp_host: str = field(
        default="127.0.0.1", metadata={"help": "Address the MLLP listener binds to."})
    mllp_max_message_bytes: int = field(
        default=1024 * 1024, metadata={"help": "Largest HL7 v2 message accepted over MLLP, "
                                               "in bytes."})
    mllp_tls_cert: str = field(
        default="", metadata={"help": "PEM certificate (chain) for MLLP over TLS; empty: "
                                      "plain TCP."})
    mllp_tls_key: str = field(
        default="", metadata={"help": "PEM private key for mllp_tls_cert (empty when the "
                                      "certificate file holds it)."})
    mllp_tls_ca: str = field(
        default="", metadata={"help": "PEM CA certificate(s) for mutual TLS on MLLP: "
                                      "senders must present a client certificate they "
                                      "signed (needs mllp_tls_cert); empty: none asked."})
    mllp_allowed_senders: str = field(
        default="", metadata={"help": "Senders the MLLP listener accepts, comma-separated: "
                                      "APP^FACILITY (MSH-3^MSH-4; * for any) and/or "
                                      "networks (10.1.0.0/16); others get AR. Empty: any."})
    mllp_threads: int = field(
        default=8, metadata={"help": "Threads parsing and mapping HL7 v2 messages (one "
                                     "writer thread applies them to the store)."})
    mllp_group_max: int = field(
        default=64, metadata={"help": "Most HL7 v2 messages committed together in one "
                                      "transaction (group commit)."})
    mllp_group_wait_ms: int = field(
        default=2, metadata={"help": "Longest wait, in milliseconds, for messages still "
                                     "being parsed to join a group commit."})
    hl7_concept_maps: str = field(
        default="", metadata={"help": "Canonical URLs (comma-separated) of the ConceptMaps "
                                      "in the store that translate local HL7 v2 codes; read "
                                      "when the gateway starts."})
    # -- device readings (issue 6; docs/ingestion.md) --
    mqtt_url: str = field(
        default="", metadata={"help": "MQTT broker for device readings, mqtt://HOST:PORT "
                                      "or mqtts://HOST:PORT (TLS); empty leaves the "
                                      "subscriber off."})
    mqtt_tls_ca: str = field(
        default="", metadata={"help": "PEM CA certificate(s) that verify an mqtts:// "
                                      "broker; empty: the system's CAs."})
    mqtt_topic: str = field(
        default="medarchive/devices/+/readings",
        metadata={"help": "MQTT topic filter the device subscriber listens to."})
    mqtt_client_id: str = field(
        default="medarchive-devices",
        metadata={"help": "MQTT client id of the device subscriber (its persistent session; "
                          "-0, -1, ... appended per connection); unique per deployment."})
    mqtt_connections: int = field(
        default=4, metadata={"help": "MQTT sessions sharing the device subscription "
                                     "($share/medarchive/...), each with its own window of "
                                     "unacknowledged messages."})
    device_batch_size: int = field(
        default=500, metadata={"help": "Most device readings written in one transaction."})
    device_batch_ms: int = field(
        default=200, metadata={"help": "Longest wait, in milliseconds, to fill a batch of "
                                       "device readings."})
    device_materializer: bool = field(
        default=True, metadata={"help": "Run the device-readings materializer inside the "
                                        "server when it has one worker process (else run "
                                        "medarchive devices materialize beside it)."})
    device_materialize_batch: int = field(
        default=500, metadata={"help": "Most raw device readings made Observations in one "
                                        "transaction by the materializer."})
    device_raw_keep_hours: int = field(
        default=24, metadata={"help": "Raw device readings are deleted this many hours after "
                                      "they were materialized (the Observation stays)."})
    device_retention_days: int = field(
        default=30, metadata={"help": "Raw device readings older than this many days are "
                                      "compacted into per-minute summaries, by the server "
                                      "every device_retention_every or by medarchive devices "
                                      "compact; 0: kept raw, no compaction."})
    device_retention_every: str = field(
        default="1h", metadata={"help": "How often the server runs the device retention "
                                        "policy (15m, 1h, 1d; one process at a time however "
                                        "many share the database); empty: never (run "
                                        "medarchive devices compact yourself)."})
    alert_webhook_url: str = field(
        default="", metadata={"help": "NEWS2 alerts: http(s) URL that receives each alert's "
                                      "Communication (POST, application/fhir+json), e.g. a "
                                      "pager gateway; empty: none (docs/ingestion.md)."})
    alert_mqtt_topic: str = field(
        default="", metadata={"help": "NEWS2 alerts: MQTT topic on the mqtt_url broker that "
                                      "each alert's Communication is published to (QoS 1); "
                                      "empty: none."})
    alert_delivery_attempts: int = field(
        default=3, metadata={"help": "NEWS2 alerts: tries per channel (5 s timeout each, "
                                     "waiting 1, 2, 4... s between) before the failure is "
                                     "logged and noted on the Communication."})
    alert_delivery_scan_s: float = field(
        default=60.0, metadata={"help": "NEWS2 alerts: how often (s) the notifier sends the "
                                        "alert Communications the record says are undelivered "
                                        "(in-progress), besides at start (docs/ingestion.md)."})
    alert_delivery_max_age_s: float = field(
        default=14_400.0, metadata={"help": "NEWS2 alerts: an alert Communication still "
                                            "undelivered this many seconds after it was sent "
                                            "is given up (status stopped, noted, logged as an "
                                            "error)."})
    # -- backup and restore (issue 5; docs/operations.md) --
    backup_dir: str = field(
        default="var/backups", metadata={"help": "Folder of backups (medarchive backup create "
                                                  "and the server's scheduled backups)."})
    backup_key_file: str = field(
        default="var/backup.key",
        metadata={"help": "Key file that encrypts and signs backups (created 0600 on first "
                          "use); keep an escrow copy elsewhere."})
    backup_schedule: str = field(
        default="", metadata={"help": "Interval of backups the server takes itself (30m, 6h, "
                                      "1d); empty: none."})
    backup_full_every: int = field(
        default=7, metadata={"help": "Scheduled backups: every Nth is full, the others "
                                     "incremental."})
    backup_keep_daily: int = field(
        default=7, metadata={"help": "Retention: newest backup of each of the last N days."})
    backup_keep_weekly: int = field(
        default=4, metadata={"help": "Retention: newest backup of each of the last N weeks."})
    backup_keep_monthly: int = field(
        default=12, metadata={"help": "Retention: newest backup of each of the last N months."})
    # -- encryption at rest (issue 5; docs/encryption.md) --
    encryption: str = field(
        default="on",
        metadata={"help": "Encryption at rest of resource bodies and of the search values that "
                          "identify a patient (blind indexes): on or off (docs/encryption.md)."})
    encryption_key_manager: str = field(
        default="file",
        metadata={"help": "Keeper of the key-encryption key: file (encryption_key_file) or "
                          "vault (HashiCorp Vault transit engine)."})
    encryption_key_file: str = field(
        default="var/medarchive.kek",
        metadata={"help": "Key file of the key-encryption key (created 0600 at first start); "
                          "keep it off the database's disk, with an escrow copy."})
    encryption_vault_url: str = field(
        default="", metadata={"help": "Vault address for the vault key manager (default: "
                                      "VAULT_ADDR); the token comes from VAULT_TOKEN."})
    encryption_vault_mount: str = field(
        default="transit", metadata={"help": "Mount path of Vault's transit engine."})
    encryption_vault_key: str = field(
        default="medarchive", metadata={"help": "Name of the transit key that wraps the data "
                                                "keys (created aes256-gcm96 when missing)."})
    # -- Bulk Data and the warehouse (issue 7; docs/bulk-data.md, docs/analytics.md) --
    bulk_dir: str = field(
        default="var/bulk", metadata={"help": "Folder of Bulk Data $export files (one "
                                              "sub-folder per job)."})
    bulk_workers: int = field(
        default=1, metadata={"help": "Threads per server process that run $export and "
                                     "$import jobs; 0 runs none in this process."})
    bulk_import_dir: str = field(
        default="var/import", metadata={"help": "Folder whose files $import may read as "
                                                "file:// inputs; empty: no file:// inputs."})
    bulk_import_urls: str = field(
        default="", metadata={"help": "URL prefixes (comma-separated, e.g. "
                                      "https://data.example.org/exports/) $import may fetch "
                                      "http(s) inputs from; empty: none."})
    bulk_import_processes: int = field(
        default=2, metadata={"help": "Worker processes per running $import job that validate "
                                     "and index its lines (0: in the job's thread)."})
    warehouse_path: str = field(
        default="var/warehouse.duckdb",
        metadata={"help": "DuckDB file of medarchive warehouse build/sql (the Spark engine "
                          "writes Parquet datasets into a folder of the same name + .parquet)."})
    spark_master: str = field(
        default="local[2]", metadata={"help": "Spark master URL for the spark engine "
                                              "(local[N], spark://HOST:7077, yarn...)."})

    def public_base(self) -> str:
        """``base_url``, else the URL the server listens on (an IPv6 address in brackets)."""
        scheme = "https" if self.tls_cert else "http"
        return (self.base_url or f"{scheme}://{url_host(self.host)}:{self.port}").rstrip("/")


def url_host(host: str) -> str:
    """``host`` as the host part of a URL: an IPv6 literal in brackets (RFC 3986 §3.2.2,
    a zone id escaped as ``%25``, RFC 6874), anything else as it is."""
    bare = host.strip("[]")
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return host
    if address.version == 6:
        return "[" + bare.replace("%", "%25") + "]"
    return bare


def is_loopback(host: str) -> bool:
    """True when ``host`` is ``localhost`` or a loopback address: 127.0.0.0/8 (RFC 1122
    §3.2.1.3), ``::1`` and IPv4-mapped 127/8 (``::ffff:127.0.0.2``)."""
    bare = host.strip("[]").lower()
    if bare == "localhost":
        return True
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def setting_names() -> list[str]:
    return [f.name for f in fields(Settings)]


def setting_help() -> dict[str, str]:
    return {f.name: f.metadata["help"] for f in fields(Settings)}


def _coerce(name: str, raw: Any) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    if kind in ("bool", bool):
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"setting {name}: expected true or false, got {raw!r}")
    if kind in ("int", int):
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ValueError(f"setting {name}: expected an integer, got {raw!r}") from None
    return str(raw)


def load_settings(overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None,
                  config_file: str | Path | None = None) -> Settings:
    """Defaults < TOML file < environment < overrides (CLI flags). Unknown keys are errors."""
    env = os.environ if environ is None else environ
    names = set(setting_names())
    values: dict[str, Any] = {}
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown settings in {path}: {', '.join(sorted(unknown))}")
        values.update(data)
    for name in names:
        raw = env.get(ENV_PREFIX + name.upper())
        if raw is not None:
            values[name] = raw
    for name, raw in (overrides or {}).items():
        if name not in names:
            raise ValueError(f"unknown setting {name}")
        if raw is not None:
            values[name] = raw
    return Settings(**{name: _coerce(name, raw) for name, raw in values.items()})
