"""``medarchive validate PATH``: check FHIR JSON files against the R4 definitions.

Exit status 0 when every resource is valid; otherwise 1, with each file's OperationOutcome
printed (the same validation the server applies to every write).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from medarchive.cli.context import console, echo_json, fail
from medarchive.errors import Issue, operation_outcome
from medarchive.service.ingest import find_files


def _resources(path: Path) -> list[tuple[str, Any]]:
    if ".ndjson" in path.name:
        items = []
        for number, line in enumerate(path.read_bytes().splitlines(), start=1):
            if line.strip():
                try:
                    items.append((f"{path}:{number}", orjson.loads(line)))
                except orjson.JSONDecodeError as exc:
                    items.append((f"{path}:{number}", exc))
        return items
    try:
        return [(str(path), orjson.loads(path.read_bytes()))]
    except orjson.JSONDecodeError as exc:
        return [(str(path), exc)]


def validate(path: Annotated[Path, typer.Argument(help="A JSON/NDJSON file or a folder.")]
             ) -> None:
    """Validate resources (or Bundles) in PATH; print an OperationOutcome for each invalid one."""
    from medarchive.fhir.spec import load_spec
    from medarchive.fhir.validate import validate_resource

    if not path.exists():
        fail(f"{path}: no such file or folder", 2)
    spec = load_spec()
    files = find_files(path) if path.is_dir() else [path]
    invalid = checked = 0
    for file in files:
        for where, resource in _resources(file):
            checked += 1
            if isinstance(resource, Exception):
                issues = [Issue("structure", f"invalid JSON: {resource}")]
            else:
                issues = [i for i in validate_resource(resource, spec) if i.severity in
                          ("error", "fatal")]
            if issues:
                invalid += 1
                console.print(f"[red]invalid[/] {where}")
                echo_json(operation_outcome(issues))
    console.print(f"{checked - invalid} of {checked} resources valid")
    if invalid or not checked:
        raise typer.Exit(1)
