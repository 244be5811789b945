"""``medarchive audit``: check and read the hash-chained audit trail.

``audit verify`` walks the whole chain and exits 1 naming the first record that was edited,
inserted, deleted or reordered; ``audit show`` prints AuditEvents as JSON lines.
"""

from __future__ import annotations

import sys
from typing import Annotated

import orjson
import typer

from medarchive.cli.context import console, reported
from medarchive.cli.users import security_db

app = typer.Typer(help="Audit trail (see docs/security.md).", no_args_is_help=True)


def trail(db: object):  # type: ignore[no-untyped-def]
    from medarchive.app import utc_now
    from medarchive.security.audit import AuditTrail
    return AuditTrail(db, utc_now)  # type: ignore[arg-type]


@app.command("verify")
def verify(ctx: typer.Context) -> None:
    """Recompute the hash chain; exit 1 naming the first bad record."""
    with reported(), security_db(ctx) as db:
        checked, problem = trail(db).verify()
    if problem is not None:
        console.print(f"[bold red]audit trail broken[/] at record {problem.seq}: "
                      f"{problem.reason} ({checked} records before it are intact)",
                      highlight=False)
        raise typer.Exit(1)
    typer.echo(f"audit trail intact: {checked} records")


@app.command("show")
def show(ctx: typer.Context,
         after: Annotated[int, typer.Option(help="Start after this record number.")] = 0,
         limit: Annotated[int, typer.Option(help="Most records to print.")] = 100) -> None:
    """Print AuditEvents as JSON lines (record number in ``id``)."""
    with reported(), security_db(ctx) as db:
        events = trail(db).events(after, limit)
    for seq, event in events:
        sys.stdout.write(orjson.dumps({"id": str(seq), **event}).decode() + "\n")
