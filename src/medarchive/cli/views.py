"""``medarchive views``: run SQL on FHIR views over the live store or exported NDJSON, and keep
views in the record (docs/analytics.md).

``views run VIEW`` takes a ViewDefinition file, or the name of a view stored in the record
(``views add``) or shipped in the library; ``--input DIR`` reads a Bulk Data export (or any
NDJSON) instead of the store. Output goes to ``--out`` or, for CSV and NDJSON, to stdout. A
run over the live store is an export AuditEvent, written before any row (``export_audit``).
"""

from __future__ import annotations

import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from medarchive.cli.context import console, fail, reported, state
from medarchive.cli.export_audit import exporting

app = typer.Typer(help="SQL on FHIR views: run, store, list.", no_args_is_help=True)


def _load_view(services: Any, text: str) -> dict[str, Any]:
    from medarchive.analytics import library
    from medarchive.analytics.stored import find_view

    path = Path(text)
    if path.is_file():
        view: dict[str, Any] = orjson.loads(path.read_bytes())
        return view
    if services is not None:
        stored = find_view(services.repository, text)
        if stored is not None:
            return stored
    try:
        return library.view(text)
    except KeyError:
        fail(f"{text}: neither a ViewDefinition file, a stored view nor a shipped view")
        raise


def _ndjson_files(folder: Path) -> list[str]:
    files = sorted(str(p) for p in folder.rglob("*.ndjson")) if folder.is_dir() else \
        [str(folder)] if folder.is_file() else []
    if not files:
        fail(f"{folder}: no .ndjson files")
    return files


@app.command("run")
def run(
    ctx: typer.Context,
    view_ref: Annotated[str, typer.Argument(
        metavar="VIEW", help="ViewDefinition JSON file, or a stored or shipped view's name.")],
    input: Annotated[Path | None, typer.Option(
        "--input", help="Folder (or file) of NDJSON to read instead of the live store.")] = None,
    engine: Annotated[str, typer.Option(help="python, duckdb or spark.")] = "duckdb",
    fmt: Annotated[str, typer.Option("--format", help="csv, ndjson or parquet.")] = "csv",
    out: Annotated[Path | None, typer.Option(
        "--out", help="Output file (default stdout; required for parquet).")] = None,
) -> None:
    """Run one view and write its rows."""
    from medarchive.analytics import ENGINES, parse_view, run_view
    from medarchive.analytics.compile import CannotCompile
    from medarchive.analytics.output import FORMATS, copy_ndjson_view, write_parquet, write_rows
    from medarchive.analytics.viewdef import ViewError
    from medarchive.analytics.warehouse import live_resources
    from medarchive.app import build_services

    if engine not in ENGINES:
        fail(f"--engine must be one of {', '.join(ENGINES)}")
    if fmt not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}")
    if fmt == "parquet" and out is None:
        fail("--format parquet needs --out FILE")
    settings = state(ctx).settings()
    services = None if input is not None and Path(view_ref).is_file() else \
        build_services(settings)
    try:
        with reported():
            try:
                model = parse_view(_load_view(services, view_ref))
                columns = list(model.column_names)
                audit = nullcontext() if input is not None else exporting(
                    services, f"views run {view_ref} --engine {engine} --format {fmt}"
                    + (f" --out {out}" if out else ""), f"view={view_ref} "
                    f"resource={model.resource}")  # fail closed: audited before any row
                with audit, tempfile.TemporaryDirectory(prefix="medarchive-views-") as tmp:
                    if input is not None:
                        paths = _ndjson_files(input)
                    else:
                        assert services is not None
                        paths = [str(Path(tmp) / "store.ndjson")]
                        with open(paths[0], "wb") as handle:
                            for version in live_resources(services.repository,
                                                          [model.resource]):
                                handle.write(version.body + b"\n")
                    if engine == "duckdb" and out is not None:
                        count = copy_ndjson_view(model, paths, fmt, out)
                    else:
                        spark = None
                        if engine == "spark":
                            from medarchive.analytics import spark_engine
                            spark = spark_engine.session(settings.spark_master)
                        rows = run_view(model, _read(paths), engine, spark=spark)
                        if fmt == "parquet":
                            assert out is not None
                            count = write_parquet(rows, out)
                        elif out is None:
                            count = write_rows(rows, columns, fmt, sys.stdout.buffer)
                        else:
                            with out.open("wb") as handle:
                                count = write_rows(rows, columns, fmt, handle)
            except (ViewError, CannotCompile) as exc:
                fail(str(exc))
    finally:
        if services is not None:
            services.close()
    console.print(f"{count:,} rows" + (f" written to {out}" if out else ""))


def _read(paths: list[str]) -> Any:
    for path in paths:
        with open(path, "rb") as handle:
            for line in handle:
                if line.strip():
                    yield orjson.loads(line)


@app.command("add")
def add(ctx: typer.Context,
        file: Annotated[Path, typer.Argument(help="ViewDefinition JSON file.")]) -> None:
    """Store a ViewDefinition in the record (a Library resource; a new version if it exists)."""
    from medarchive.analytics.stored import store_view
    from medarchive.analytics.viewdef import ViewError
    from medarchive.app import build_services

    settings = state(ctx).settings()
    with reported():
        services = build_services(settings)
        try:
            view = orjson.loads(file.read_bytes())
            try:
                version = store_view(services.repository, view)
            except ViewError as exc:
                fail(str(exc))
        finally:
            services.close()
    console.print(f"stored view {view['name']} (version {version})")


@app.command("list")
def list_views(ctx: typer.Context) -> None:
    """The views stored in the record and the ones shipped in the library."""
    from medarchive.analytics import library
    from medarchive.analytics.stored import stored_views
    from medarchive.app import build_services

    settings = state(ctx).settings()
    table = Table("name", "resource", "where")
    with reported():
        services = build_services(settings)
        try:
            for view in stored_views(services.repository):
                table.add_row(str(view.get("name")), str(view.get("resource")), "stored")
        finally:
            services.close()
    for name, view in library.views().items():
        table.add_row(name, str(view.get("resource")), "library")
    Console().print(table)  # the listing is the command's output: stdout
