"""``medarchive import PATH``: load NDJSON files or Bundles, a file or a folder, resumably."""

from __future__ import annotations

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
) -> None:
    """Import FHIR data; re-running skips what was already imported (resumable)."""
    from medarchive.app import build_services

    settings = state(ctx).settings()
    with reported():
        files = find_files(path)
        if not files:
            fail(f"{path}: no .ndjson or .json files found")
        services = build_services(settings)
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
