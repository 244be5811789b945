"""Fixtures for the device tests: an archive on each backend with one assigned monitor."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from medarchive.app import Services, build_devices, build_services
from medarchive.devices.pipeline import Pipeline
from medarchive.devices.readings import DEVICE_SYSTEM
from medarchive.settings import Settings


@pytest.fixture
def services(database_url: str) -> Iterator[Services]:
    built = build_services(Settings(database_url=database_url, auth="off"))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
         "resource": {"resourceType": "Patient", "name": [{"family": "Bed", "given": ["Ward"]}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Device",
                      "identifier": [{"system": DEVICE_SYSTEM, "value": "MON-1"}],
                      "patient": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"}},
         "request": {"method": "POST", "url": "Device"}},
        {"resource": {"resourceType": "Device",
                      "identifier": [{"system": DEVICE_SYSTEM, "value": "SPARE-9"}]},
         "request": {"method": "POST", "url": "Device"}},
    ]}
    built.submit(bundle)
    yield built
    built.close()


@pytest.fixture
def pipeline(services: Services) -> Pipeline:
    """The raw-readings pipeline over ``services`` (materializer not started)."""
    return build_devices(services)

