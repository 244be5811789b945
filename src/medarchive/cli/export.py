"""``medarchive export``: the current record as NDJSON, one file per resource type."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medarchive.cli.context import console, reported, state
from medarchive.fhir.search.query import SearchQuery, SortKey

PAGE = 1000


def export(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Folder to write <Type>.ndjson files into.")] = Path(
        "var/export"),
    types: Annotated[list[str] | None, typer.Option(
        "--type", help="Resource type to export (repeatable); default every type.")] = None,
) -> None:
    """Write every current (not deleted) resource as NDJSON, one file per type."""
    from medarchive.app import build_services

    settings = state(ctx).settings()
    with reported():
        services = build_services(settings)
        try:
            wanted = sorted(types or services.spec.resource_types)
            unknown = [t for t in wanted if not services.spec.is_resource_type(t)]
            if unknown:
                raise ValueError(f"unknown resource type(s): {', '.join(unknown)}")
            out.mkdir(parents=True, exist_ok=True)
            written = 0
            for rtype in wanted:
                written += _export_type(services.store, rtype, out)
        finally:
            services.close()
    console.print(f"exported {written} resources to {out}")


def _export_type(store: object, rtype: str, out: Path) -> int:
    count = 0
    target = out / f"{rtype}.ndjson"
    partial = target.with_suffix(".ndjson.partial")
    offset = 0
    with partial.open("wb") as handle:
        while True:
            page = store.search(SearchQuery(rtype, sort=(SortKey("_id", "_id"),),  # type: ignore[attr-defined]
                                            count=PAGE, offset=offset))
            for version in page:
                handle.write(version.body + b"\n")
            count += len(page)
            offset += len(page)
            if len(page) < PAGE:
                break
    if count:
        partial.replace(target)
    else:
        partial.unlink()
    return count
