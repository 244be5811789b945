"""Generated resources are valid FHIR R4 according to MedArchive's own validator."""

from __future__ import annotations

from typing import Any

import pytest

Resource = dict[str, Any]


def test_sample_and_hospital_validate(sample: list[Resource], hospital: Resource) -> None:
    validate = pytest.importorskip("medarchive.fhir.validate").validate_resource
    errors = []
    for bundle in [hospital, *sample[:20]]:
        errors += [f"{i.expression}: {i.diagnostics}" for i in validate(bundle)
                   if i.severity in ("error", "fatal")]
    assert not errors, errors[:20]


def test_validator_is_not_blind(sample: list[Resource]) -> None:
    validate = pytest.importorskip("medarchive.fhir.validate").validate_resource
    patient = dict(sample[0]["entry"][0]["resource"], gender="man")
    assert any(i.severity == "error" for i in validate(patient))
