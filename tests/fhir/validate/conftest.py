"""Helpers for the validator tests: the loaded spec and a compact view of the issues."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from medarchive.fhir.spec import Spec, load_spec
from medarchive.fhir.validate import validate_resource


@pytest.fixture(scope="session")
def spec() -> Spec:
    return load_spec()


@pytest.fixture
def errors(spec: Spec) -> Callable[[Any], list[tuple[str, str]]]:
    """Validate and return (issue code, location) of every error-level issue."""

    def run(resource: Any) -> list[tuple[str, str]]:
        return [(issue.code, issue.expression[0] if issue.expression else "")
                for issue in validate_resource(resource, spec) if issue.severity == "error"]

    return run


@pytest.fixture
def locations(errors: Callable[[Any], list[tuple[str, str]]]) -> Callable[[Any], list[str]]:
    """Validate and return only the locations of the error-level issues."""

    def run(resource: Any) -> list[str]:
        return [where for _, where in errors(resource)]

    return run
