"""``medarchive db``: schema migrations and search reindexing of the configured database."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from medarchive.cli.context import console, fail, reported, state
from medarchive.cli.progress import progress_bar
from medarchive.store.sql.database import open_database
from medarchive.store.sql.migrations import applied, available, migrate

if TYPE_CHECKING:
    from medarchive.store.base import ReindexProgress

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
    param: Annotated[str | None, typer.Option(
        "--param", help="Rebuild only this search parameter's rows (an official one or a "
                        "SearchParameter stored in the record), for the resources of its base "
                        "types; its progress is kept apart as JOB@PARAM.")] = None,
) -> None:
    """Re-extract the search index of every current resource (R4 §3.1.1: after a search
    parameter or the indexer changed). Resumable: an interrupted run continues after the last
    committed batch when started again with the same job name (and --type, --param)."""
    from medarchive.app import build_services
    from medarchive.store.base import reindex_job_key
    from medarchive.store.sql.paramindex import param_job_key

    settings = state(ctx).settings()
    if settings.database_url.startswith("memory:"):
        fail("reindex needs a SQLite or PostgreSQL database (database_url)")
    name = reindex_job_key(job, resource_type) if param is None else \
        param_job_key(job, param, resource_type)
    started = time.perf_counter()
    with reported():
        services = build_services(settings)
        try:
            spec = services.repository.spec
            if resource_type is not None and not spec.is_resource_type(resource_type):
                fail(f"unknown resource type {resource_type!r}")
            run = _whole(services.store, job, resource_type) if param is None else \
                _one_param(services.store, spec, job, param, resource_type)
            batches: list[ReindexProgress] = []
            with progress_bar() as bar:
                task = bar.add_task(f"reindex {param or ''} {resource_type or 'all types'} "
                                    f"({name})", total=None, rate="")

                def show(progress: ReindexProgress) -> None:
                    batches.append(progress)
                    if len(batches) == 1:  # the rate counts from here: a resumed job's
                        marks.append(time.perf_counter())  # earlier batches are not in it
                    done = progress.done - batches[0].done
                    rate = f"{done / (time.perf_counter() - marks[0]):,.0f} res/s" if done \
                        else ""
                    bar.update(task, total=progress.total, completed=progress.done, rate=rate)
                marks: list[float] = []
                final = run(batch=batch, restart=restart, progress=show)
                bar.update(task, total=max(final.total, 1), completed=final.total)
        finally:
            services.close()
    if not batches:
        console.print(f"job {name!r} had already finished ({final.done} resources); use "
                      "--restart to run it again")
    else:
        console.print(f"reindexed {final.done} resources (job {name!r}) in "
                      f"{time.perf_counter() - started:.1f} s")


Run = Callable[..., "ReindexProgress"]


def _whole(store: Any, job: str, resource_type: str | None) -> Run:
    """Every index row of every resource (of ``resource_type``)."""
    return functools.partial(store.reindex, job=job, resource_type=resource_type)


def _no_rows(resource: dict[str, Any]) -> Any:
    """The index entries of a union parameter (``fhir.search.unions``): none."""
    from medarchive.fhir.search.entries import IndexEntries
    return IndexEntries()


def _one_param(store: Any, spec: Any, job: str, param: str, resource_type: str | None) -> Run:
    """Only ``param``'s rows, for the resources of its base types (of ``resource_type``)."""
    from medarchive.fhir.search.custom import only_param, param_types
    from medarchive.fhir.search.index import build_indexer
    from medarchive.fhir.search.unions import union_sources
    from medarchive.store.sql.paramindex import param_job_key

    types = [t for t in param_types(spec, param) if resource_type in (None, t)]
    if not types:
        fail(f"unknown search parameter {param!r}" + (f" of {resource_type}"
                                                      if resource_type else ""))
    if not hasattr(store, "reindex_param"):
        fail("--param needs a SQLite or PostgreSQL store")
    if all(param in union_sources(spec, t) for t in types):  # searched through its sources:
        indexer: Any = _no_rows  # rows written under its name by earlier versions are deleted
    else:
        indexer = build_indexer(only_param(spec, param), full_text=param in ("_text",
                                                                             "_content"))
    return functools.partial(store.reindex_param, indexer, param, types,
                             job=param_job_key(job, param, resource_type))
