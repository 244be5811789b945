"""Fixtures for the command-line tests: the R4 spec and its search indexer, built once."""

from __future__ import annotations

from typing import Any

import pytest

from medarchive.fhir.search.index import build_indexer
from medarchive.fhir.spec import load_spec
from medarchive.store.base import Indexer


@pytest.fixture(scope="session")
def spec() -> Any:
    return load_spec()


@pytest.fixture(scope="session")
def indexer(spec: Any) -> Indexer:
    return build_indexer(spec)
