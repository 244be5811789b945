"""``medarchive backup``: create, list, verify and prune encrypted backups (docs/operations.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from medarchive.cli.context import console, fail, reported, state
from medarchive.cli.users import audit_admin

app = typer.Typer(help="Encrypted, signed backups: create, list, verify, prune.",
                  no_args_is_help=True)
out = Console()


def encryption_kek(settings: Any) -> Any:
    """The encryption key manager, which seals the search index inside backups (None when
    encryption is off)."""
    from medarchive.app import build_encryption
    from medarchive.fhir.spec import load_spec

    encryption = build_encryption(settings, load_spec())
    return encryption.kek if encryption is not None else None


def sql_url(url: str) -> str:
    if url.startswith("memory:"):
        fail("backups need a SQL database (database_url sqlite:///... or postgresql://...)")
    return url


@app.command("create")
def create(
    ctx: typer.Context,
    to: Annotated[Path | None, typer.Option(
        "--to", help="Backup folder (default: the backup_dir setting).")] = None,
    incremental: Annotated[bool, typer.Option(
        help="Only what changed since the newest backup in the folder.")] = False,
) -> None:
    """Take an online, consistent backup while the server keeps running."""
    from medarchive.backup.keys import load_key
    from medarchive.backup.snapshot import create_backup
    from medarchive.store.sql.database import open_database

    settings = state(ctx).settings()
    with reported():
        key = load_key(Path(settings.backup_key_file), create=True)
        db = open_database(sql_url(settings.database_url))
        try:
            result = create_backup(db, to or Path(settings.backup_dir), key,
                                   incremental=incremental, kek=encryption_kek(settings))
            audit_admin(db, f"backup create {result.kind} {result.backup_id}")
        finally:
            db.close()
    if result.note:
        console.print(f"note: {result.note}")
    console.print(f"{result.kind} backup {result.backup_id}: {result.rows:,} rows, "
                  f"{result.stored_bytes:,} bytes in {result.seconds:.2f} s -> {result.path}")


@app.command("list")
def list_command(
    ctx: typer.Context,
    folder: Annotated[Path | None, typer.Argument(
        help="Backup folder (default: the backup_dir setting).")] = None,
) -> None:
    """List the backups of a folder: id, kind, parent, rows, size (the ids restore takes)."""
    from medarchive.backup.archive import Backup, backup_ids, files, open_backup
    from medarchive.backup.errors import BackupError
    from medarchive.backup.keys import load_key

    settings = state(ctx).settings()
    root = folder or Path(settings.backup_dir)
    with reported():
        key = load_key(Path(settings.backup_key_file))
        table = Table(title=f"backups in {root}")
        table.add_column("id", no_wrap=True, min_width=29)
        table.add_column("kind")
        table.add_column("parent", no_wrap=True, overflow="ellipsis")
        table.add_column("rows", justify="right")
        table.add_column("bytes", justify="right")
        problems = []
        for backup_id in backup_ids(root):
            try:
                doc = open_backup(root, backup_id, key).manifest
            except BackupError as exc:
                table.add_row(backup_id, "[bold red]unreadable[/]", "", "", "")
                problems.append(str(exc))
                continue
            parts = doc["tables"].values()
            stored = sum(f["bytes"] for _, f in files(Backup(root, doc)))  # index image too
            table.add_row(backup_id, doc["kind"], doc["parent"] or "-",
                          f"{sum(t['rows'] for t in parts):,}", f"{stored:,}")
    screen = Console()
    screen.print(table)
    for problem in problems:
        screen.print(f"[bold red]unreadable:[/] {problem}", highlight=False)


@app.command("verify")
def verify(
    ctx: typer.Context,
    folder: Annotated[Path | None, typer.Argument(
        help="Backup folder (default: the backup_dir setting).")] = None,
    backup: Annotated[str | None, typer.Option(
        help="Backup id to verify with its chain (default: the newest).")] = None,
) -> None:
    """Check signatures and checksums, restore into a scratch database and compare."""
    from medarchive.backup.keys import load_key
    from medarchive.backup.verify import verify_backup

    settings = state(ctx).settings()
    with reported():
        key = load_key(Path(settings.backup_key_file))
        report = verify_backup(folder or Path(settings.backup_dir), key, backup,
                               kek=encryption_kek(settings))
    table = Table(title=f"backup {report.backup_id or '-'}  (chain: {len(report.chain)})")
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail")
    for check in report.checks:
        table.add_row(check.name, "[green]ok[/]" if check.ok else "[bold red]FAILED[/]",
                      check.detail)
    out.print(table)
    out.print(f"{'VERIFIED' if report.ok else 'NOT VERIFIED'} in {report.seconds:.2f} s")
    if not report.ok:
        raise typer.Exit(1)


@app.command("prune")
def prune_command(
    ctx: typer.Context,
    folder: Annotated[Path | None, typer.Option(
        "--dir", help="Backup folder (default: the backup_dir setting).")] = None,
    keep_daily: Annotated[int | None, typer.Option(help="Days to keep one backup of.")] = None,
    keep_weekly: Annotated[int | None, typer.Option(help="Weeks to keep one of.")] = None,
    keep_monthly: Annotated[int | None, typer.Option(help="Months to keep one of.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Only list what would go.")] = False,
) -> None:
    """Delete backups outside the retention policy; never breaks an incremental chain."""
    from medarchive.backup.keys import load_key
    from medarchive.backup.prune import prune

    settings = state(ctx).settings()
    with reported():
        key = load_key(Path(settings.backup_key_file))
        result = prune(folder or Path(settings.backup_dir), key,
                       daily=settings.backup_keep_daily if keep_daily is None else keep_daily,
                       weekly=settings.backup_keep_weekly if keep_weekly is None
                       else keep_weekly,
                       monthly=settings.backup_keep_monthly if keep_monthly is None
                       else keep_monthly, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for backup_id in result.removed:
        console.print(f"{verb} {backup_id}")
    for backup_id in result.unreadable:
        console.print(f"[yellow]left alone (unreadable with this key):[/] {backup_id}")
    console.print(f"kept {len(result.kept)}, {verb} {len(result.removed)}")


@app.command("key-escrow")
def key_escrow(
    ctx: typer.Context,
    to: Annotated[Path, typer.Option("--to", help="New file for the escrow copy.")],
) -> None:
    """Copy the backup key (owner-only) for safekeeping away from the server."""
    from medarchive.backup.keys import escrow_key

    settings = state(ctx).settings()
    with reported():
        key = escrow_key(Path(settings.backup_key_file), to)
    console.print(f"backup key {key.key_id} copied to {to}: store it off this machine")
