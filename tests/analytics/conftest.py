"""Fixtures for the view engine tests: demo resources and a local Spark session."""

from __future__ import annotations

import os
from typing import Any

import pytest

from medarchive.demo import generate_ndjson


def need(reason: str) -> None:
    """Skip with ``reason`` locally; fail under CI, where nothing may be skipped."""
    if os.environ.get("CI"):
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def demo_resources() -> list[dict[str, Any]]:
    """About 5,000 coherent resources of every type the demo generator writes."""
    return list(generate_ndjson(20, seed=11))


@pytest.fixture(scope="session")
def spark() -> Any:
    """The process's local SparkSession; skipped (failed under CI) when Spark cannot run."""
    try:
        from medarchive.analytics import spark_engine
        return spark_engine.session()
    except Exception as exc:  # ImportError, or no usable Java
        need(f"Spark is not usable here: {exc}")
