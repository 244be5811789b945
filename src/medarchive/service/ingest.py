"""Loading files of FHIR data: NDJSON (one resource a line) and Bundles, a file or a folder.

Every way in goes through the service path, so an import is a series of transaction Bundles
submitted like any client's. Resources with an id are PUT at that id (so re-running an import
never duplicates them), others POSTed. Each chunk carries an idempotency key made of the file's
content digest and the chunk number: a chunk whose key was committed before is skipped, which
makes an interrupted import resumable exactly where it stopped, and never applied twice.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from medarchive.errors import AlreadyApplied, BadRequest, FhirError

SUFFIXES = (".ndjson", ".ndjson.gz", ".json", ".json.gz")

Submit = Callable[[dict[str, Any], str], dict[str, Any]]
"""Runs one transaction Bundle with an idempotency key; returns the transaction-response."""


@dataclass
class FileReport:
    """What happened to one file."""

    path: str
    resources: int = 0
    chunks: int = 0
    skipped_chunks: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def find_files(path: Path) -> list[Path]:
    """The importable files at ``path`` (itself, or everything below it), in a stable order."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise BadRequest(f"{path}: no such file or folder")
    return sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))


def _open(path: Path) -> BinaryIO:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")  # type: ignore[return-value]


def digest(path: Path) -> str:
    sha = hashlib.sha256()
    with _open(path) as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def entry_for(resource: Any, where: str) -> dict[str, Any]:
    """A transaction entry that stores ``resource``: PUT at its id, or POST without one."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise BadRequest(f"{where}: not a FHIR resource (no resourceType)")
    rtype, rid = resource["resourceType"], resource.get("id")
    if isinstance(rid, str) and rid:
        return {"fullUrl": f"{rtype}/{rid}", "resource": resource,
                "request": {"method": "PUT", "url": f"{rtype}/{rid}"}}
    return {"resource": resource, "request": {"method": "POST", "url": rtype}}


def transaction(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _ndjson_chunks(path: Path, size: int) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    entries: list[dict[str, Any]] = []
    first = 1
    with _open(path) as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path.name} line {number}"
            try:
                resource = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise BadRequest(f"{where}: invalid JSON ({exc})") from None
            entries.append(entry_for(resource, where))
            if len(entries) >= size:
                yield f"lines {first}-{number}", entries
                entries, first = [], number + 1
    if entries:
        yield f"lines {first}-end", entries


def _json_chunks(path: Path, size: int) -> Iterator[tuple[str, list[dict[str, Any]] | dict]]:
    with _open(path) as handle:
        try:
            data = orjson.loads(handle.read())
        except orjson.JSONDecodeError as exc:
            raise BadRequest(f"{path.name}: invalid JSON ({exc})") from None
    if isinstance(data, dict) and data.get("resourceType") == "Bundle" and \
            data.get("type") in ("transaction", "batch"):
        yield "bundle", data
        return
    if isinstance(data, dict) and data.get("resourceType") == "Bundle":
        resources = [e.get("resource") for e in data.get("entry", []) if isinstance(e, dict)]
        for start in range(0, len(resources), size):
            part = resources[start:start + size]
            yield (f"entries {start + 1}-{start + len(part)}",
                   [entry_for(r, f"{path.name} entry {start + i + 1}")
                    for i, r in enumerate(part)])
        return
    yield "resource", [entry_for(data, path.name)]


def _failures(response: dict[str, Any]) -> list[str]:
    problems = []
    for number, entry in enumerate(response.get("entry", []), start=1):
        status = str(entry.get("response", {}).get("status", ""))
        if status[:1] not in ("2", ""):
            outcome = entry.get("response", {}).get("outcome", {})
            text = "; ".join(i.get("diagnostics", "") for i in outcome.get("issue", []))
            problems.append(f"entry {number}: {status} {text}".strip())
    return problems


def import_file(path: Path, submit: Submit, *, chunk_size: int = 500,
                progress: Callable[[int], None] | None = None) -> FileReport:
    """Import one file chunk by chunk; a failed chunk is reported and the rest go on."""
    report = FileReport(str(path))
    key_base = f"import:{digest(path)}"
    chunks = _ndjson_chunks(path, chunk_size) if ".ndjson" in path.name \
        else _json_chunks(path, chunk_size)
    try:
        for number, (label, payload) in enumerate(chunks):
            bundle = payload if isinstance(payload, dict) else transaction(payload)
            count = len(bundle.get("entry", []))
            report.chunks += 1
            try:
                response = submit(bundle, f"{key_base}:{number}")
            except AlreadyApplied:
                report.skipped_chunks += 1
            except FhirError as exc:
                report.errors.append(f"{label}: {exc}")
            else:
                problems = _failures(response)
                report.errors += [f"{label}: {p}" for p in problems]
                report.resources += count - len(problems)
            if progress:
                progress(count)
    except FhirError as exc:
        report.errors.append(str(exc))
    return report
