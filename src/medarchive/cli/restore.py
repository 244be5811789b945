"""``medarchive restore``: the configured database from a backup chain, whole or as of a moment."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from medarchive.cli.backup import sql_url
from medarchive.cli.context import console, reported, state
from medarchive.cli.users import audit_admin
from medarchive.store.base import to_micros


def parse_until(text: str) -> int:
    """An ISO 8601 instant (``2026-05-01T10:00:00Z``; no offset means UTC) as microseconds."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--until: expected an ISO 8601 time such as 2026-05-01T10:00:00Z, "
                         f"got {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return to_micros(moment)


def restore_command(
    ctx: typer.Context,
    source: Annotated[Path, typer.Option("--from", help="Backup folder.")],
    until: Annotated[str | None, typer.Option(
        help="Point in time (ISO 8601, UTC): versions last updated at or before it.")] = None,
    backup: Annotated[str | None, typer.Option(
        help="Restore the chain ending at this backup id (default: the newest).")] = None,
    force: Annotated[bool, typer.Option(
        help="Replace a target database that is not empty.")] = False,
    fallback: Annotated[bool, typer.Option(
        help="If the chosen backup is damaged, use the newest intact older one.")] = False,
) -> None:
    """Restore the configured database; stop the server first."""
    from medarchive.app import build_encryption
    from medarchive.backup.keys import load_key
    from medarchive.backup.restore import plan_restore, reindex_with, restore
    from medarchive.fhir.search.index import build_indexer
    from medarchive.fhir.spec import load_spec
    from medarchive.store.sql.database import open_database

    settings = state(ctx).settings()
    with reported():
        url = sql_url(settings.database_url)
        moment = parse_until(until) if until else None
        key = load_key(Path(settings.backup_key_file))
        plan = plan_restore(source, key, until=moment, backup_id=backup, fallback=fallback)
        for reason in plan.skipped:
            console.print(f"[yellow]skipped:[/] {reason}", highlight=False)
        spec = load_spec()
        encryption = build_encryption(settings, spec)
        result = restore(plan, key, url, force=force,
                         reindex=reindex_with(build_indexer(spec), encryption),
                         kek=encryption.kek if encryption is not None else None)
        db = open_database(url)
        try:  # the restored audit trail goes on with the restore itself
            audit_admin(db, f"restore from {result.backup_id}"
                        + (f" until {until}" if until else "") + (" forced" if force else ""))
        finally:
            db.close()
    point = f" as of {until}" if until else ""
    console.print(f"restored {result.resources:,} resources ({result.versions:,} versions, "
                  f"{result.rows:,} rows) from {result.backup_id}{point} "
                  f"(chain of {len(result.chain)}) in {result.seconds:.2f} s")
