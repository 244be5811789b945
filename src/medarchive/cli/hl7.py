"""``medarchive hl7 deadletter list|show|replay|discard``: refused messages, and what to do.

A refused message (AE/AR) is kept in the HL7 message log with the reason and its bytes as
received; an operator lists them, fixes the mapping or the message, and replays it through the
same gateway path, so the replay is logged, idempotent and applied through validation like the
first attempt; a dead letter that will never be replayed is discarded with a reason. Dead
letters hold patients' messages: printing their text (``list --raw``, ``show``) is audited as a
read, and replaying or discarding one as an administrative change, as the local operating-system
user (docs/ingestion.md, docs/security.md).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from medarchive.cli.context import console, fail, reported, state

if TYPE_CHECKING:
    from medarchive.mllp.log import LogEntry, SqlMessageLog

app = typer.Typer(help="HL7 v2 gateway (see docs/ingestion.md).", no_args_is_help=True)
deadletter = typer.Typer(help="Refused HL7 v2 messages: list, show, replay and discard.",
                         no_args_is_help=True)
app.add_typer(deadletter, name="deadletter")
EntryId = Annotated[int, typer.Argument(help="Log entry id (from `list`).")]


@contextmanager
def message_log(ctx: typer.Context) -> Iterator[tuple[Any, SqlMessageLog]]:
    """The configured database (migrated, for the audit trail) and its message log (with
    the data keys when encryption at rest is on: sealed rows are opened with them)."""
    from medarchive.app import build_encryption
    from medarchive.fhir.spec import load_spec
    from medarchive.mllp.log import SqlMessageLog
    from medarchive.store.sql.crypto import Keyring
    from medarchive.store.sql.database import open_database
    from medarchive.store.sql.migrations import migrate

    settings = state(ctx).settings()
    if settings.database_url.startswith("memory:"):
        fail("the HL7 message log needs a SQL database (sqlite:/// or postgresql://), "
             "not memory://")
    with reported():
        db = open_database(settings.database_url)
        try:
            migrate(db)
            encryption = (build_encryption(settings, load_spec())
                          if settings.encryption != "off" else None)
            yield db, SqlMessageLog(db, Keyring(db, encryption) if encryption else None)
        finally:
            db.close()


def audit_read(db: Any, entries: list[LogEntry], detail: str) -> None:
    """Record that the local operating-system user read these entries' messages (action R;
    the patients named when the entry lists what it wrote); raises if it cannot be written,
    so nothing is printed unaudited."""
    import getpass

    from medarchive.app import utc_now
    from medarchive.security.actor import Actor
    from medarchive.security.audit import AuditTrail
    from medarchive.security.audit_events import audit_event

    patients = {ref.split("/")[1] for entry in entries for ref in entry.resources
                if ref.startswith("Patient/")}
    who = Actor("system", f"cli:{getpass.getuser()}", "administrator", ())
    trail = AuditTrail(db, utc_now)
    try:
        trail.record(audit_event(who, "read", utc_now(), status=200, detail=detail,
                                 patients=patients))
    finally:
        trail.close()


@deadletter.command("list")
def list_dead(ctx: typer.Context,
              limit: Annotated[int, typer.Option(help="Most entries to print.")] = 100,
              raw: Annotated[bool, typer.Option(
                  help="Include the message text (audited as a read).")] = False,
              ) -> None:
    """Print the dead letters (outcome AE/AR, not yet replayed or discarded) as JSON lines."""
    with message_log(ctx) as (db, log):
        entries = log.entries(status="dead", limit=limit)
        if raw and entries:
            audit_read(db, entries, "hl7 deadletter list --raw: entries "
                       + ",".join(str(e.id) for e in entries))
    for entry in entries:
        sys.stdout.write(orjson.dumps(_row(entry, raw=raw)).decode() + "\n")


@deadletter.command("show")
def show(ctx: typer.Context, entry_id: EntryId,
         message: Annotated[bool, typer.Option(
             "--message", help="Print only the message, its bytes exactly as received "
                               "(to correct it and replay it with --file).")] = False,
         ) -> None:
    """Print one message-log entry (any outcome) as JSON: outcome, error, resources written,
    unmapped fields, attempts, note and the message text (audited as a read); exit 1 when
    there is no such entry."""
    with message_log(ctx) as (db, log):
        entry = _existing(log, entry_id)
        audit_read(db, [entry], f"hl7 deadletter show {entry_id}"
                   + (" --message" if message else ""))
    if message:
        sys.stdout.buffer.write(entry.message_bytes())
        sys.stdout.flush()
        return
    sys.stdout.write(orjson.dumps(_row(entry, raw=True), option=orjson.OPT_INDENT_2).decode()
                     + "\n")


def _existing(log: SqlMessageLog, entry_id: int) -> LogEntry:
    entry = log.get(entry_id)
    if entry is None:
        console.print(f"[bold red]error:[/] no HL7 message log entry {entry_id}",
                      highlight=False)
        raise typer.Exit(1)
    return entry


def _row(entry: LogEntry, *, raw: bool) -> dict[str, object]:
    row: dict[str, object] = {
        "id": entry.id, "received": entry.received, "key": entry.key,
        "outcome": entry.outcome, "status": entry.status, "duplicate": entry.duplicate,
        "error": entry.error, "resources": list(entry.resources),
        "unmapped": list(entry.unmapped), "attempts": entry.attempts, "note": entry.note}
    if raw:
        row["raw"] = entry.raw
    return row


@deadletter.command("replay")
def replay(ctx: typer.Context, entry_id: EntryId,
           fixed: Annotated[Path | None, typer.Option(
               "--file", help="Corrected message to apply instead of the bytes received.")
           ] = None,
           ) -> None:
    """Apply a dead letter again (as received, or corrected from --file), recorded on the
    dead letter; exit 1 unless AA."""
    from medarchive.app import build_gateway
    from medarchive.cli.users import audit_admin

    settings = state(ctx).settings()
    with message_log(ctx) as (db, _), reported():
        gateway, services = build_gateway(settings)
        try:
            try:
                outcome = gateway.replay(entry_id, fixed.read_bytes() if fixed else None)
            except KeyError as exc:
                fail(exc.args[0])
        finally:
            gateway.close()
            services.close()
        audit_admin(db, f"hl7 deadletter replay {entry_id}"
                    + (f" --file {fixed.name}" if fixed else "") + f": {outcome.code}")
    typer.echo(f"replayed entry {entry_id}: {outcome.code} (log entry {outcome.log_id})")
    if outcome.code != "AA":
        raise typer.Exit(1)


@deadletter.command("discard")
def discard(ctx: typer.Context, entry_id: EntryId,
            reason: Annotated[str, typer.Option(
                help="Why it will never be replayed (kept in the entry's note).")],
            ) -> None:
    """Mark a dead letter discarded: kept in the log, no longer listed or replayable
    (audited)."""
    import getpass

    from medarchive.cli.users import audit_admin

    if not reason.strip():
        fail("--reason must say why the message is discarded")
    with message_log(ctx) as (db, log):
        entry = _existing(log, entry_id)
        if entry.status != "dead":
            fail(f"HL7 message log entry {entry_id} is {entry.status}, not dead")
        log.set_status(entry_id, "discarded", f"discarded by {getpass.getuser()}: {reason}")
        key = f" ({entry.key})" if entry.key else ""
        audit_admin(db, f"hl7 deadletter discard {entry_id}{key}: {reason}")
    typer.echo(f"discarded entry {entry_id}")
