"""``medarchive import PATH``: load NDJSON files or Bundles, a file or a folder, resumably.

``--bulk`` takes the NDJSON fast path (``service.bulk.imports``, docs/bulk-data.md): many
resources per transaction, validation and indexing in a process pool; resumable too (each
chunk's idempotency key is made of the file's content digest), one AuditEvent per file."""

from __future__ import annotations

import gc
import os
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medarchive.cli.context import console, fail, reported, state
from medarchive.cli.progress import progress_bar
from medarchive.service.ingest import FileReport, find_files, import_file


def import_command(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="An .ndjson/.json(.gz) file or a folder of them.")],
    chunk_size: Annotated[int, typer.Option(help="Resources per transaction.")] = 500,
    bulk: Annotated[bool, typer.Option(
        "--bulk", help="NDJSON fast path: 5,000 resources per transaction, validation and "
                       "indexing in a process pool.")] = False,
    processes: Annotated[int, typer.Option(
        help="--bulk: worker processes (0: work in this process).")] = os.cpu_count() or 1,
    bulk_chunk: Annotated[int, typer.Option(
        min=1, help="--bulk: resources per transaction (and per resumable chunk).")] = 5000,
) -> None:
    """Import FHIR data; re-running skips what was already imported (resumable)."""
    from medarchive.app import build_services

    settings = state(ctx).settings()
    with reported():
        files = find_files(path)
        if not files:
            fail(f"{path}: no .ndjson or .json files found")
        if bulk:
            _bulk(settings, files, processes, bulk_chunk)
            return
        services = build_services(settings)
        gc.freeze()  # see _bulk
        reports: list[FileReport] = []
        started = time.perf_counter()
        total = 0
        try:
            with progress_bar() as bar:
                task = bar.add_task("importing", total=None, rate="")
                for file in files:
                    bar.update(task, description=file.name)

                    def advance(count: int) -> None:
                        nonlocal total
                        total += count
                        rate = total / max(time.perf_counter() - started, 1e-6)
                        bar.update(task, advance=count, rate=f"{rate:,.0f} res/s")

                    reports.append(import_file(file, services.submit, chunk_size=chunk_size,
                                               progress=advance))
        finally:
            services.close()
    table = Table("file", "resources", "chunks", "skipped (done before)", "errors")
    for report in reports:
        table.add_row(Path(report.path).name, str(report.resources), str(report.chunks),
                      str(report.skipped_chunks), str(len(report.errors)))
    console.print(table)
    failed = [r for r in reports if not r.ok]
    for report in failed:
        for error in report.errors[:20]:
            console.print(f"[red]{Path(report.path).name}[/]: {error}", highlight=False)
    if failed:
        raise typer.Exit(1)


def _bulk(settings: object, files: list[Path], processes: int, chunk: int) -> None:
    from medarchive.app import build_services
    from medarchive.service.bulk.imports import BulkImport, file_source
    from medarchive.service.ingest import digest

    ndjson = [f for f in files if ".ndjson" in f.name]
    if len(ndjson) != len(files):
        fail("--bulk loads NDJSON files only (.ndjson, .ndjson.gz)")
    services = build_services(settings)  # type: ignore[arg-type]
    # the R4 definitions live as long as the command, and a load allocates enough to make
    # every full collection scan them again (15-35 % of an import's CPU): exempt them
    gc.freeze()
    started = time.perf_counter()
    try:
        with progress_bar() as bar:
            bar.add_task("bulk import", total=None, rate="")
            reports = BulkImport(services.repository, chunk=chunk, processes=processes).load_many(
                [file_source(f, key=digest(f)) for f in ndjson])
    finally:
        services.close()
    seconds = time.perf_counter() - started
    table = Table("file", "stored", "skipped (done before)", "refused")
    for report in reports:
        table.add_row(Path(report.source).name, str(report.stored), str(report.skipped),
                      str(len(report.errors)))
    console.print(table)
    stored = sum(r.stored for r in reports)
    console.print(f"{stored:,} resources in {seconds:.1f} s ({stored / max(seconds, 1e-6):,.0f}"
                  " resources/s)")
    for report in reports:
        for error in report.errors[:20]:
            console.print(f"[red]{Path(report.source).name}[/]: {error}", highlight=False)
    if any(not r.ok for r in reports):
        raise typer.Exit(1)
