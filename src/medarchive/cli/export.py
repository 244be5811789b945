"""``medarchive export``: the current record as NDJSON, one file per resource type.

It reads the store with the Bulk Data export stream (``service.bulk.export``: keyset pages of
the change feed, so a million resources cost no more per page than a thousand, and memory
stays at one page), as of the moment it starts; files are written as ``.partial`` and renamed
when the whole export succeeded and its AuditEvent is written (``export_audit``: no export
without its audit record; a failed one is audited too and leaves no files).
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Annotated, Any

import typer

from medarchive.cli.context import console, reported, state
from medarchive.cli.export_audit import failure_status, record


def export(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Folder to write <Type>.ndjson files into.")] = Path(
        "var/export"),
    types: Annotated[list[str] | None, typer.Option(
        "--type", help="Resource type to export (repeatable); default every type.")] = None,
) -> None:
    """Write every current (not deleted) resource as NDJSON, one file per type."""
    from medarchive.app import build_services
    from medarchive.service.bulk.export import stream

    settings = state(ctx).settings()
    with reported():
        services = build_services(settings)
        try:
            wanted = sorted(types or services.spec.resource_types)
            what = f"types={','.join(types) if types else '*'}"
            detail = f"export --out {out}"
            unknown = [t for t in wanted if not services.spec.is_resource_type(t)]
            handles: dict[str, IO[bytes]] = {}
            counts: dict[str, int] = {}
            try:
                if unknown:
                    raise ValueError(f"unknown resource type(s): {', '.join(unknown)}")
                out.mkdir(parents=True, exist_ok=True)
                params: dict[str, Any] = {"level": "system", "types": wanted,
                                          "type_filters": {}, "since": None}
                repository = services.repository
                try:
                    for version in stream(repository, params, after_seq=0,
                                          max_seq=repository.last_seq()):
                        rtype = version.resource_type
                        handle = handles.get(rtype)
                        if handle is None:
                            handle = handles[rtype] = (
                                out / f"{rtype}.ndjson.partial").open("wb")
                        handle.write(version.body + b"\n")
                        counts[rtype] = counts.get(rtype, 0) + 1
                finally:
                    for handle in handles.values():
                        handle.close()
                written = sum(counts.values())
                record(services, f"{detail} resources={written} " + " ".join(
                    f"{t}={n}" for t, n in sorted(counts.items())), what)
            except Exception as exc:
                for rtype in handles:
                    (out / f"{rtype}.ndjson.partial").unlink(missing_ok=True)
                record(services, f"{detail} failed: {exc}", what, failure_status(exc))
                raise
            for rtype in handles:
                (out / f"{rtype}.ndjson.partial").replace(out / f"{rtype}.ndjson")
        finally:
            services.close()
    console.print(f"exported {written} resources to {out}")
