"""Helpers of the device tests (plain functions; the fixtures are in conftest.py)."""

from __future__ import annotations

from typing import Any

from medarchive.app import Services


def reading_time(i: int) -> str:
    """A distinct reading time for reading number ``i``."""
    return f"2024-05-01T{i // 3600 % 24:02d}:{i // 60 % 60:02d}:{i % 60:02d}Z"


def observations(services: Services) -> list[dict[str, Any]]:
    """The current Observations of the store."""
    latest: dict[str, dict[str, Any] | None] = {}
    for version in services.store.changes(0, 1_000_000):
        if version.resource_type == "Observation":
            latest[version.id] = None if version.deleted else version.resource()
    return [o for o in latest.values() if o is not None]
