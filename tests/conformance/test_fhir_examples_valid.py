"""The validator accepts the official R4 examples and the Synthea patient Bundles.

Reads ``<repo>/../shared/conformance/fhir-examples/r4/*.json`` (367 official examples) and
``<repo>/../shared/conformance/synthea/bundles/*.json`` (30 transaction Bundles) in place. Each
official example must validate with no error-level issue, except the few listed in
``KNOWN_INVALID``, which break the R4 definitions themselves and must fail with exactly the
listed locations. Each Synthea Bundle must validate whole, and so must each entry resource on
its own. Missing data skips the tests, or fails them when CI is set.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from medarchive.fhir.spec import load_spec
from medarchive.fhir.validate import validate_resource

CONFORMANCE = Path(__file__).resolve().parents[2] / ".." / "shared" / "conformance"
EXAMPLES = CONFORMANCE / "fhir-examples" / "r4"
SYNTHEA = CONFORMANCE / "synthea" / "bundles"

# file -> (location of the one error, why the official example is invalid per R4's definitions)
KNOWN_INVALID: dict[str, tuple[str, str]] = {
    "DeviceMetric-example.json": (
        "DeviceMetric.parent.reference",
        "DeviceMetric.parent is Reference(Device) in R4; the example points at a "
        "DeviceDefinition"),
    "DeviceUseStatement-example.json": (
        "DeviceUseStatement.reasonReference[0].reference",
        "reasonReference allows Condition|Observation|DiagnosticReport|DocumentReference|Media; "
        "the example points at a Procedure"),
    "MedicationRequest-medrx0301.json": (
        "MedicationRequest.dispenseRequest.performer.reference",
        "dispenseRequest.performer is Reference(Organization); the example points at a "
        "Practitioner"),
    "Observation-clinical-gender.json": (
        "Observation.performer[0].reference",
        "Observation.performer does not allow Encounter; the example's performer is an "
        "Encounter"),
}


def _files(folder: Path) -> list[Any]:
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if files:
        return [pytest.param(path, id=path.name) for path in files]
    return [pytest.param(None, id="missing")]


def _need(path: Path | None, folder: Path) -> Path:
    if path is None:
        reason = f"conformance data not found at {folder}"
        if os.environ.get("CI"):
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)
    return path


def _errors(resource: Any) -> list[str]:
    return [f"{','.join(i.expression)}: {i.diagnostics}"
            for i in validate_resource(resource, load_spec()) if i.severity == "error"]


@pytest.mark.parametrize("path", _files(EXAMPLES))
def test_official_example_is_valid(path: Path | None) -> None:
    path = _need(path, EXAMPLES)
    found = _errors(orjson.loads(path.read_bytes()))
    if path.name in KNOWN_INVALID:
        where, _ = KNOWN_INVALID[path.name]
        assert [f.split(":")[0] for f in found] == [where]
    else:
        assert found == []


def test_known_invalid_examples_exist() -> None:
    _need(_files(EXAMPLES)[0].values[0], EXAMPLES)
    assert all((EXAMPLES / name).is_file() for name in KNOWN_INVALID)


@pytest.mark.parametrize("path", _files(SYNTHEA))
def test_synthea_bundle_and_entries_are_valid(path: Path | None) -> None:
    path = _need(path, SYNTHEA)
    bundle = orjson.loads(path.read_bytes())
    assert bundle["resourceType"] == "Bundle" and bundle["entry"]
    assert _errors(bundle) == []
    for index, entry in enumerate(bundle["entry"]):
        assert _errors(entry["resource"]) == [], f"entry {index}"
