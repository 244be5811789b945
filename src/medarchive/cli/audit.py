"""``medarchive audit``: check, anchor and read the hash-chained audit trail.

``audit verify`` walks the whole chain and exits 1 naming the first record that was edited,
inserted, deleted or reordered; with ``--anchor FILE`` it also checks that the trail still holds
every head anchored in FILE (so a rewrite of the whole table is caught). ``audit anchor`` prints
the current head signed with the server key and appends it to ``--output``; ``audit show``
prints AuditEvents as JSON lines; ``audit break-glass`` lists break-the-glass grants.
"""

from __future__ import annotations

import sys
from pathlib import Path
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


def tokens(db: object):  # type: ignore[no-untyped-def]
    """The server's signing keys (the issuer does not matter for anchors)."""
    from medarchive.app import utc_now
    from medarchive.security.tokens import TokenService
    return TokenService(db, "medarchive", utc_now)  # type: ignore[arg-type]


def _broken(seq: int, reason: str, checked: int | None = None) -> None:
    intact = "" if checked is None else f" ({checked} records before it are intact)"
    console.print(f"[bold red]audit trail broken[/] at record {seq}: {reason}{intact}",
                  highlight=False)
    raise typer.Exit(1)


@app.command("verify")
def verify(ctx: typer.Context,
           anchor: Annotated[Path | None, typer.Option(
               help="Also check every anchor in this file (written by `audit anchor`).",
               dir_okay=False)] = None) -> None:
    """Recompute the hash chain; exit 1 naming the first bad record."""
    from medarchive.security import anchor as anchors
    with reported(), security_db(ctx) as db:
        audit = trail(db)
        checked, problem = audit.verify()
        if problem is not None:
            _broken(problem.seq, problem.reason, checked)
        found = 0
        if anchor is not None:
            keys = tokens(db)
            for value in anchors.read(anchor):
                problem = anchors.check(audit, keys, value)
                if problem is not None:
                    _broken(problem.seq, f"{problem.reason} (anchor file {anchor})")
                found += 1
    more = f"; {found} anchors hold" if anchor is not None else ""
    typer.echo(f"audit trail intact: {checked} records{more}")


@app.command("anchor")
def anchor(ctx: typer.Context,
           output: Annotated[Path | None, typer.Option(
               help="Append the anchor to this file (keep it off this host).",
               dir_okay=False)] = None) -> None:
    """Print the current head (record number and hash) signed with the server key."""
    from medarchive.security import anchor as anchors
    with reported(), security_db(ctx) as db:
        taken = anchors.take(trail(db), tokens(db))
        line = orjson.dumps(taken.to_json()).decode()
        if output is not None:
            with output.open("a") as file:
                file.write(line + "\n")
    sys.stdout.write(line + "\n")


@app.command("show")
def show(ctx: typer.Context,
         after: Annotated[int, typer.Option(help="Start after this record number.")] = 0,
         limit: Annotated[int, typer.Option(help="Most records to print.")] = 100) -> None:
    """Print AuditEvents as JSON lines (record number in ``id``)."""
    with reported(), security_db(ctx) as db:
        events = trail(db).events(after, limit)
    for seq, event in events:
        sys.stdout.write(orjson.dumps({"id": str(seq), **event}).decode() + "\n")


@app.command("break-glass")
def break_glass(ctx: typer.Context,
                active: Annotated[bool, typer.Option(
                    "--active", help="Only grants that have not expired.")] = False,
                limit: Annotated[int, typer.Option(help="At most this many, newest first.")]
                = 500) -> None:
    """List break-the-glass grants (who, which patient, why, until when) as JSON lines."""
    from medarchive.app import utc_now
    from medarchive.security.access import Access
    with reported(), security_db(ctx) as db:
        grants = Access(db, utc_now).grants(active_only=active, limit=limit)  # type: ignore[arg-type]
    for grant in grants:
        sys.stdout.write(orjson.dumps(grant.to_json()).decode() + "\n")
