"""``medarchive warehouse``: build the analytics warehouse from the record, and query it.

``build`` materialises every stored view plus the shipped library (``analytics.warehouse``):
incrementally into the DuckDB file ``warehouse_path``, or with ``--engine spark`` into Parquet
datasets (``<warehouse_path>.parquet/<view>/``) on the ``spark_master`` cluster; it is an export
AuditEvent, written before the build (``export_audit``). ``sql`` runs a query on the DuckDB
warehouse and prints the result as a table (docs/analytics.md).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from medarchive.cli.context import console, fail, reported, state
from medarchive.cli.export_audit import exporting

app = typer.Typer(help="The analytics warehouse: build it, query it.", no_args_is_help=True)


def _views(repository: Any) -> dict[str, dict[str, Any]]:
    """The shipped library, then the stored views (a stored view wins on a name clash)."""
    from medarchive.analytics import library
    from medarchive.analytics.stored import stored_views

    views = library.views()
    for view in stored_views(repository):
        views[str(view["name"])] = view
    return views


@app.command("build")
def build(
    ctx: typer.Context,
    engine: Annotated[str, typer.Option(help="duckdb (incremental) or spark (Parquet).")] =
    "duckdb",
    spark_master: Annotated[str | None, typer.Option(
        help="Spark master URL; overrides the spark_master setting.")] = None,
    window: Annotated[int | None, typer.Option(
        help="Change sequence numbers re-read before the last build's (default: 10000 on "
             "PostgreSQL, 0 on SQLite).")] = None,
) -> None:
    """Materialise every stored and shipped view."""
    from medarchive.analytics import warehouse
    from medarchive.analytics.compile import CannotCompile
    from medarchive.analytics.viewdef import ViewError
    from medarchive.app import build_services

    if engine not in ("duckdb", "spark"):
        fail("--engine must be duckdb or spark")
    settings = state(ctx).settings(**({"spark_master": spark_master} if spark_master else {}))
    with reported():
        services = build_services(settings)
        try:
            views = _views(services.repository)
            try:  # fail closed: audited before the warehouse is touched
                with exporting(services, f"warehouse build --engine {engine}",
                               f"views={','.join(sorted(views))}"):
                    postgres = settings.database_url.startswith("postgres")
                    reread = window if window is not None else (10_000 if postgres else 0)
                    target = settings.warehouse_path
                    if engine == "spark":
                        from medarchive.analytics import spark_engine, spark_warehouse
                        target += ".parquet"
                        report = spark_warehouse.build_spark(
                            services.repository, target, views,
                            spark_engine.session(settings.spark_master), window=reread)
                    else:
                        report = warehouse.build(services.repository, target, views,
                                                 window=reread)
            except (ViewError, CannotCompile) as exc:
                fail(str(exc))
        finally:
            services.close()
    _print_counts(report.views, report.unchanged)
    console.print(f"{report.changes:,} changes read (seq {report.from_seq}..{report.to_seq}), "
                  f"{report.resources:,} resources in {target}, "
                  f"{report.seconds:.1f} s")


def _print_counts(counts: dict[str, int], unchanged: list[str]) -> None:
    table = Table("view", "rows")
    for name, rows in sorted(counts.items()):
        table.add_row(name, f"{rows:,}")
    for name in sorted(unchanged):
        table.add_row(name, "unchanged")
    console.print(table)


@app.command("sql")
def sql(
    ctx: typer.Context,
    query: Annotated[str, typer.Argument(help="DuckDB SQL over the view tables.")],
    limit: Annotated[int, typer.Option(help="Most rows printed.")] = 100,
) -> None:
    """Query the DuckDB warehouse and print the result."""
    import duckdb

    from medarchive.analytics.warehouse import query as run_query

    settings = state(ctx).settings()
    with reported():
        try:
            columns, rows = run_query(settings.warehouse_path, query)
        except duckdb.Error as exc:
            fail(str(exc).splitlines()[0])
    table = Table(*columns)
    for row in rows[:limit]:
        table.add_row(*["" if v is None else str(v) for v in row])
    Console().print(table)  # the result is the command's output: stdout
    if len(rows) > limit:
        console.print(f"{len(rows):,} rows; {limit} shown (--limit)")
