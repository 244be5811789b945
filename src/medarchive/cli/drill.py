"""``medarchive drill``: disaster-recovery drills on a copy of the system (docs/operations.md)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from medarchive.cli.backup import sql_url
from medarchive.cli.context import console, reported, state


def drill(
    ctx: typer.Context,
    report: Annotated[Path, typer.Option(
        help="JSON report file; a readable .md page is written beside it.")],
    scenario: Annotated[list[str] | None, typer.Option(
        help="Scenario to run (repeatable; default all): lost-database, corrupted-database, "
             "ransomware, corrupted-last-backup, lost-key, mass-delete.")] = None,
    workdir: Annotated[Path | None, typer.Option(
        help="Folder for the copies (default: a temporary folder, removed afterwards).")] = None,
    writes: Annotated[int, typer.Option(help="Resources each drill writes to its copy.")] = 50,
) -> None:
    """Simulate disasters on copies of the configured database, recover, and report RTO/RPO.
    The live database is only read."""
    from medarchive.app import build_encryption
    from medarchive.backup.drill import Drill, write_report
    from medarchive.fhir.search.index import build_indexer
    from medarchive.fhir.spec import load_spec

    settings = state(ctx).settings()
    with reported():
        url = sql_url(settings.database_url)
        spec = load_spec()
        indexer, encryption = build_indexer(spec), build_encryption(settings, spec)
        if workdir is None:
            with tempfile.TemporaryDirectory(prefix="medarchive-drill-") as scratch:
                results = Drill(url, Path(scratch), indexer, writes=writes,
                                encryption=encryption).run(scenario or [])
        else:
            results = Drill(url, workdir, indexer, writes=writes,
                            encryption=encryption).run(scenario or [])
        json_path, page = write_report(results, report, url, settings.backup_schedule)
    for r in results:
        mark = "[green]recovered[/]" if r.verified else "[bold red]FAILED[/]"
        console.print(f"{r.scenario:24} {mark}  RTO {r.rto_seconds:.2f} s  RPO "
                      f"{r.rpo_seconds:.2f} s  lost {r.lost_versions} versions", highlight=False)
    console.print(f"report: {json_path} and {page}")
    if not all(r.verified for r in results):
        raise typer.Exit(1)
