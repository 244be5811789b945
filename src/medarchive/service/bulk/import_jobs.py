"""Asynchronous Bulk Data ``$import``: a Parameters kick-off, a job that pulls the inputs and
loads them through the NDJSON fast path, and its completion manifest.

The import side of Bulk Data is an HL7 draft ("Bulk Data Import", ping and pull): the client
``POST``s ``[base]/$import`` with ``Prefer: respond-async`` and a ``Parameters`` resource naming
``inputFormat`` (``application/fhir+ndjson``) and one ``input`` per file (parts ``type``, the
resource type, and ``url``); the server answers ``202`` with ``Content-Location`` and the client
polls it exactly as for ``$export`` (``runner``: same job table, workers, cancel and files).
Every URL is checked against the ``InputPolicy`` at kick-off (403 before anything is queued)
and again when fetched. The job runs as the actor who asked, so every write passes the guard.
Inputs are loaded with the job id and input number as resumability key: a job restarted after
a crash skips the chunks it had committed. The manifest lists per input the resources stored
and refused; the refused lines are OperationOutcomes in one NDJSON error file per input.
A request with an NDJSON body instead runs synchronously (``BulkImport.operation``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from medarchive.errors import BadRequest
from medarchive.service.bulk.imports import (
    NDJSON_TYPES,
    BulkImport,
    Source,
    loaded_ids,
    ndjson_lines,
)
from medarchive.service.bulk.inputs import InputPolicy, fetch
from medarchive.service.bulk.jobs import Job
from medarchive.service.request import FhirRequest

INPUT_FORMATS = NDJSON_TYPES


def _value(part: dict[str, Any], *names: str) -> str | None:
    for name in names:
        value = part.get(name)
        if isinstance(value, str):
            return value
    return None


def parse_parameters(body: bytes, spec: Any, policy: InputPolicy) -> dict[str, Any]:
    """The job parameters of a kick-off ``Parameters`` body: ``inputs`` (type, url) in order,
    and ``inputSource`` when given. Bad or disallowed inputs raise (400/403)."""
    try:
        resource = orjson.loads(body or b"null")
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"$import: the body is not JSON ({exc})") from None
    if not isinstance(resource, dict) or resource.get("resourceType") != "Parameters" or \
            not isinstance(resource.get("parameter"), list):
        raise BadRequest("$import needs a Parameters resource with inputFormat and input")
    formats, inputs, source = [], [], None
    for parameter in resource["parameter"]:
        if not isinstance(parameter, dict):
            raise BadRequest("$import: every parameter must be an object")
        name = parameter.get("name")
        if name == "inputFormat":
            formats.append(_value(parameter, "valueCode", "valueString"))
        elif name == "inputSource":
            source = _value(parameter, "valueUri", "valueUrl", "valueString")
        elif name == "input":
            if not isinstance(parameter.get("part"), list):
                raise BadRequest("$import: each input needs a type and a url part")
            parts = {p["name"]: p for p in parameter["part"]
                     if isinstance(p, dict) and isinstance(p.get("name"), str)}
            rtype = _value(parts.get("type") or {}, "valueCode", "valueString")
            url = _value(parts.get("url") or {}, "valueUri", "valueUrl", "valueString")
            if rtype is None or url is None:
                raise BadRequest("$import: each input needs a type and a url part")
            if not spec.is_resource_type(rtype):
                raise BadRequest(f"$import: {rtype[:80]!r} is not an R4 resource type")
            inputs.append({"type": rtype, "url": url})
        elif name != "storageDetail":
            raise BadRequest(f"$import: unknown parameter {str(name)[:80]!r}")
    if len(formats) != 1 or formats[0] not in INPUT_FORMATS:
        raise BadRequest("$import: inputFormat must be application/fhir+ndjson")
    if not inputs:
        raise BadRequest("$import: no input")
    for item in inputs:
        policy.check(item["url"])
    return {"inputs": inputs, "inputSource": source}


def is_parameters_kickoff(request: FhirRequest) -> bool:
    """True for the asynchronous form (a JSON body), False for an NDJSON body."""
    media = (request.header("content-type") or "").split(";")[0].strip().lower()
    return media in ("application/fhir+json", "application/json")


def run_import(repository: Any, job: Job, policy: InputPolicy, folder: Path,
               proceed: Callable[[Job], bool], processes: int = 0) -> Job | None:
    """Fetch and load every input of ``job`` into the store, writing the error files into
    ``folder``; the completed job (output entries set), or None when stopped (``proceed``
    said no). ``proceed`` gets the job with its progress, before each input and each chunk.
    ``processes`` worker processes (started with ``spawn``: the server has threads) prepare
    the lines of every input, kept for the whole job."""
    paths = [fetch(item["url"], policy, folder / f"input-{number}.ndjson")
             for number, item in enumerate(job.params["inputs"])]
    sources = [Source(item["url"], functools.partial(ndjson_lines, path),
                      f"{job.id}/{number}", item["type"])
               for number, (item, path) in enumerate(zip(job.params["inputs"], paths,
                                                         strict=True))]
    ids = loaded_ids(sources)
    state = {"job": job}
    output: list[dict[str, Any]] = []
    with BulkImport(repository, processes=processes, context="spawn",
                    proceed=lambda: proceed(state["job"])) as importer:
        for number, source in enumerate(sources):
            state["job"] = replace(state["job"], progress=number)
            if not proceed(state["job"]):
                return None
            report = importer.load_many([source], ids)[0]
            output.append(_entry(source, report, folder, number))
            if not proceed(state["job"]):  # stopped inside this input: it is not complete
                return None
    for path in paths:
        if path.parent == folder:
            path.unlink(missing_ok=True)
    return replace(state["job"], status="completed", progress=len(sources),
                   output=tuple(output))


def _entry(source: Source, report: Any, folder: Path, number: int) -> dict[str, Any]:
    """The manifest entry of one loaded input (its refused lines written to an error file)."""
    entry: dict[str, Any] = {"type": source.type, "inputUrl": source.name,
                             "count": report.stored, "skipped": report.skipped,
                             "refused": len(report.errors)}
    if report.errors:
        name = f"errors-{number}.ndjson"
        with (folder / name).open("wb") as handle:
            for error in report.errors:
                handle.write(orjson.dumps(_error_outcome(source.name, error)) + b"\n")
        entry["errorFile"] = name
    return entry


def _error_outcome(url: str, error: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "invalid", "diagnostics": error,
                       "details": {"text": f"input {url[:500]}"}}]}


def import_manifest(job: Job, file_url: Callable[[str], str]) -> dict[str, list[Any]]:
    """The ``output`` and ``error`` lists of a completed import's manifest."""
    output = [{"type": o["type"], "inputUrl": o["inputUrl"], "count": o["count"],
               "skipped": o["skipped"], "refused": o["refused"]} for o in job.output]
    errors = [{"type": "OperationOutcome", "inputUrl": o["inputUrl"],
               "url": file_url(o["errorFile"]), "count": o["refused"]}
              for o in job.output if "errorFile" in o]
    return {"output": output, "error": errors}
