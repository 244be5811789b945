"""``medarchive db``: schema migrations of the configured database."""

from __future__ import annotations

import typer

from medarchive.cli.context import console, reported, state
from medarchive.store.sql.database import open_database
from medarchive.store.sql.migrations import applied, available, migrate

app = typer.Typer(help="Database schema commands.", no_args_is_help=True)


@app.command("migrate")
def migrate_command(ctx: typer.Context) -> None:
    """Apply pending schema migrations (the server also does this at start)."""
    settings = state(ctx).settings()
    with reported():
        db = open_database(settings.database_url)
        try:
            ran = migrate(db)
        finally:
            db.close()
    if ran:
        for migration in ran:
            console.print(f"applied migration {migration.version:04d} {migration.name}")
    else:
        console.print("schema is up to date")


@app.command("status")
def status_command(ctx: typer.Context) -> None:
    """List migrations and whether each is applied."""
    settings = state(ctx).settings()
    with reported():
        db = open_database(settings.database_url)
        try:
            done = applied(db)
            for migration in available(db.dialect):
                mark = "applied" if migration.version in done else "pending"
                typer.echo(f"{migration.version:04d} {migration.name}: {mark}")
        finally:
            db.close()
