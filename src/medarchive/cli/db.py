"""``medarchive db``: schema migrations and search reindexing of the configured database."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from medarchive.cli.context import console, fail, reported, state
from medarchive.cli.progress import progress_bar
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


@app.command("reindex")
def reindex_command(
    ctx: typer.Context,
    restart: Annotated[bool, typer.Option(
        help="Start the job over instead of resuming it (needed to rerun a finished job).")
                       ] = False,
    job: Annotated[str, typer.Option(help="Job name; progress is kept per job.")] = "reindex",
    batch: Annotated[int, typer.Option(help="Resources per transaction.", min=1)] = 500,
    resource_type: Annotated[str | None, typer.Option(
        "--type", help="Reindex only this resource type (e.g. after a search parameter of "
                       "that type was added); its progress is kept apart as JOB:TYPE.")
                             ] = None,
) -> None:
    """Re-extract the search index of every current resource (R4 §3.1.1: after a search
    parameter or the indexer changed). Resumable: an interrupted run continues after the last
    committed batch when started again with the same job name (and --type)."""
    from medarchive.app import build_services
    from medarchive.store.base import ReindexProgress, reindex_job_key

    settings = state(ctx).settings()
    if settings.database_url.startswith("memory:"):
        fail("reindex needs a SQLite or PostgreSQL database (database_url)")
    name = reindex_job_key(job, resource_type)
    started = time.perf_counter()
    with reported():
        services = build_services(settings)
        try:
            if resource_type is not None and \
                    not services.repository.spec.is_resource_type(resource_type):
                fail(f"unknown resource type {resource_type!r}")
            batches: list[ReindexProgress] = []
            with progress_bar() as bar:
                task = bar.add_task(f"reindex {resource_type or 'all types'} ({name})",
                                    total=None, rate="")

                def show(progress: ReindexProgress) -> None:
                    batches.append(progress)
                    if len(batches) == 1:  # the rate counts from here: a resumed job's
                        marks.append(time.perf_counter())  # earlier batches are not in it
                    done = progress.done - batches[0].done
                    rate = f"{done / (time.perf_counter() - marks[0]):,.0f} res/s" if done \
                        else ""
                    bar.update(task, total=progress.total, completed=progress.done, rate=rate)
                marks: list[float] = []
                final = services.store.reindex(job=job, batch=batch, restart=restart,
                                               progress=show, resource_type=resource_type)
                bar.update(task, total=max(final.total, 1), completed=final.total)
        finally:
            services.close()
    if not batches:
        console.print(f"job {name!r} had already finished ({final.done} resources); use "
                      "--restart to run it again")
    else:
        console.print(f"reindexed {final.done} resources (job {name!r}) in "
                      f"{time.perf_counter() - started:.1f} s")
