"""The ``$import`` kick-off parser: what a Parameters body becomes, and (hypothesis) that any
JSON at all is either accepted or refused with an OperationOutcome error, never a crash."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medarchive.errors import BadRequest, FhirError, Forbidden
from medarchive.service.bulk.import_jobs import parse_parameters
from medarchive.service.bulk.inputs import InputPolicy

POLICY = InputPolicy(Path("/srv/import"), ("https://data.example.org/x/",))


def body(*parameters: dict[str, Any]) -> bytes:
    return orjson.dumps({"resourceType": "Parameters", "parameter": list(parameters)})


FORMAT = {"name": "inputFormat", "valueCode": "application/fhir+ndjson"}


def source(rtype: str, url: str) -> dict[str, Any]:
    return {"name": "input", "part": [{"name": "type", "valueCode": rtype},
                                      {"name": "url", "valueUri": url}]}


def test_inputs_in_order(spec: Any) -> None:
    params = parse_parameters(body(FORMAT, {"name": "inputSource", "valueUri": "https://src"},
                                   source("Patient", "https://data.example.org/x/P.ndjson"),
                                   source("Observation", "file:///srv/import/O.ndjson"),
                                   {"name": "storageDetail", "valueCode": "https"}),
                              spec, POLICY)
    assert params == {"inputSource": "https://src", "inputs": [
        {"type": "Patient", "url": "https://data.example.org/x/P.ndjson"},
        {"type": "Observation", "url": "file:///srv/import/O.ndjson"}]}


@pytest.mark.parametrize(("parameters", "error"), [
    ((source("Patient", "file:///srv/import/P.ndjson"),), BadRequest),  # no inputFormat
    ((FORMAT, FORMAT, source("Patient", "file:///srv/import/P.ndjson")), BadRequest),
    ((FORMAT,), BadRequest),
    ((FORMAT, {"name": "input", "part": [{"name": "type", "valueCode": "Patient"}]}),
     BadRequest),
    ((FORMAT, {"name": "since", "valueInstant": "2024-01-01T00:00:00Z"}), BadRequest),
    ((FORMAT, source("Patient", "file:///etc/passwd")), Forbidden),
    ((FORMAT, source("Patient", "https://data.example.org/y/P.ndjson")), Forbidden),
])
def test_refusals(spec: Any, parameters: tuple[dict[str, Any], ...],
                  error: type[FhirError]) -> None:
    with pytest.raises(error):
        parse_parameters(body(*parameters), spec, POLICY)


WORDS = st.sampled_from(["input", "type", "url", "inputFormat", "Patient",
                         "application/fhir+ndjson", "file:///srv/import/a", "storageDetail"])
JSON = st.recursive(st.none() | st.booleans() | st.integers(-1000, 1000) |
                    st.text(max_size=8) | WORDS,
                    lambda inner: st.lists(inner, max_size=3) |
                    st.dictionaries(st.sampled_from(["name", "part", "valueCode", "valueUri",
                                                     "resourceType", "parameter"]),
                                    inner, max_size=3), max_leaves=12)


@settings(max_examples=300)
@given(st.lists(JSON, max_size=4), st.binary(max_size=20))
def test_any_body_is_accepted_or_refused(spec: Any, parameters: list[Any], raw: bytes) -> None:
    for candidate in (orjson.dumps({"resourceType": "Parameters", "parameter": parameters}),
                      raw):
        try:
            parse_parameters(candidate, spec, POLICY)
        except FhirError as exc:
            assert 400 <= exc.status < 500
