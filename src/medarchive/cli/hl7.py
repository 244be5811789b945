"""``medarchive hl7 deadletter list|show|replay``: refused messages, and a second try.

A refused message (AE/AR) is kept in the HL7 message log with the reason; an operator lists
them, fixes the mapping or the message, and replays it through the same gateway path, so the
replay is logged, idempotent and applied through validation like the first attempt.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer

from medarchive.cli.context import console, reported, state

if TYPE_CHECKING:
    from medarchive.mllp.log import LogEntry

app = typer.Typer(help="HL7 v2 gateway (see docs/ingestion.md).", no_args_is_help=True)
deadletter = typer.Typer(help="Refused HL7 v2 messages: list, show and replay.",
                         no_args_is_help=True)
app.add_typer(deadletter, name="deadletter")


@deadletter.command("list")
def list_dead(ctx: typer.Context,
              limit: Annotated[int, typer.Option(help="Most entries to print.")] = 100,
              raw: Annotated[bool, typer.Option(help="Include the message text.")] = False,
              ) -> None:
    """Print the dead letters (outcome AE/AR, not yet replayed) as JSON lines."""
    from medarchive.mllp.log import open_message_log

    settings = state(ctx).settings()
    with reported():
        message_log = open_message_log(settings.database_url)
        try:
            entries = message_log.entries(status="dead", limit=limit)
        finally:
            message_log.close()
    for entry in entries:
        sys.stdout.write(orjson.dumps(_row(entry, raw=raw)).decode() + "\n")


@deadletter.command("show")
def show(ctx: typer.Context,
         entry_id: Annotated[int, typer.Argument(help="Log entry id (from `list`).")]) -> None:
    """Print one message-log entry (any outcome) as JSON: outcome, error, resources written,
    unmapped fields and the message text; exit 1 when there is no such entry."""
    from medarchive.mllp.log import open_message_log

    settings = state(ctx).settings()
    with reported():
        message_log = open_message_log(settings.database_url)
        try:
            entry = message_log.get(entry_id)
        finally:
            message_log.close()
    if entry is None:
        console.print(f"[bold red]error:[/] no HL7 message log entry {entry_id}", highlight=False)
        raise typer.Exit(1)
    sys.stdout.write(orjson.dumps(_row(entry, raw=True), option=orjson.OPT_INDENT_2).decode()
                     + "\n")


def _row(entry: LogEntry, *, raw: bool) -> dict[str, object]:
    row: dict[str, object] = {
        "id": entry.id, "received": entry.received, "key": entry.key,
        "outcome": entry.outcome, "status": entry.status, "duplicate": entry.duplicate,
        "error": entry.error, "resources": list(entry.resources),
        "unmapped": list(entry.unmapped)}
    if raw:
        row["raw"] = entry.raw
    return row


@deadletter.command("replay")
def replay(ctx: typer.Context,
           entry_id: Annotated[int, typer.Argument(help="Log entry id (from `list`).")],
           fixed: Annotated[Path | None, typer.Option(
               "--file", help="Corrected message text to apply instead of the original.")] = None,
           ) -> None:
    """Apply a dead letter again (as logged, or corrected from --file); exit 1 unless AA."""
    from medarchive.app import build_gateway

    settings = state(ctx).settings()
    with reported():
        gateway, services = build_gateway(settings)
        try:
            try:
                outcome = gateway.replay(entry_id, fixed.read_bytes() if fixed else None)
            except KeyError as exc:
                console.print(f"[bold red]error:[/] {exc.args[0]}", highlight=False)
                raise typer.Exit(1) from None
        finally:
            gateway.close()
            services.close()
    typer.echo(f"replayed entry {entry_id}: {outcome.code} (log entry {outcome.log_id})")
    if outcome.code != "AA":
        raise typer.Exit(1)
