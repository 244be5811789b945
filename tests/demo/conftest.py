"""Fixtures for the demo-data tests: a generated sample, the hospital bundle, and ``problems``,
the invariant checker every test of generated data shares (references resolve, dates are
coherent with birth and death, periods are ordered)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from medarchive.demo import generate, reference_bundle

SEED = 7
SAMPLE = 40

Resource = dict[str, Any]


def walk_references(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every (path, reference string) inside a resource."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield path, value
            else:
                yield from walk_references(value, f"{path}.{key}")
    elif isinstance(node, list):
        for item in node:
            yield from walk_references(item, path)


def _moment(text: str) -> datetime:
    if len(text) == 10:
        return datetime.fromisoformat(text + "T00:00:00-08:00")
    return datetime.fromisoformat(text)


def _times(resource: Resource) -> Iterator[tuple[str, str]]:
    """The clinically meaningful dates of a resource (not birth, not reference ranges)."""
    for key in ("effectiveDateTime", "issued", "recordedDate", "authoredOn",
                "occurrenceDateTime", "onsetDateTime", "abatementDateTime"):
        if key in resource:
            yield key, resource[key]
    for key in ("period", "performedPeriod"):
        if key in resource:
            yield key + ".start", resource[key]["start"]
            yield key + ".end", resource[key]["end"]


def check_bundle(bundle: Resource, shared_ids: set[str]) -> list[str]:
    """Every broken invariant of one generated patient bundle, as readable strings."""
    problems: list[str] = []
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
        return ["not a transaction Bundle"]
    entries = bundle["entry"]
    urls = [e["fullUrl"] for e in entries]
    if len(set(urls)) != len(urls):
        problems.append("duplicate fullUrl")
    local = {e["fullUrl"]: e["resource"]["resourceType"] for e in entries}
    patients = [e["resource"] for e in entries if e["resource"]["resourceType"] == "Patient"]
    if len(patients) != 1:
        return [*problems, f"{len(patients)} Patients in one bundle"]
    patient = patients[0]
    born = _moment(patient["birthDate"])
    died = _moment(patient["deceasedDateTime"]) if "deceasedDateTime" in patient else None
    for entry in entries:
        resource = entry["resource"]
        rtype = resource["resourceType"]
        if not entry["fullUrl"].startswith("urn:uuid:") or "id" in resource:
            problems.append(f"{rtype}: not a urn:uuid POST entry")
        if entry["request"] != {"method": "POST", "url": rtype}:
            problems.append(f"{rtype}: request {entry['request']}")
        for path, ref in walk_references(resource):
            if ref.startswith("urn:uuid:"):
                if ref not in local:
                    problems.append(f"{rtype}{path}: dangling {ref}")
            elif ref not in shared_ids:
                problems.append(f"{rtype}{path}: {ref} is not a shared hospital resource")
        for key, text in _times(resource):
            moment = _moment(text)
            if key != "onsetDateTime" and key != "abatementDateTime" and moment < born:
                problems.append(f"{rtype}.{key} {text} before birth {patient['birthDate']}")
            if key == "onsetDateTime" and moment.date() < born.date():
                problems.append(f"{rtype}.onset {text} before birth")
            if died is not None and moment > died:
                problems.append(f"{rtype}.{key} {text} after death {patient['deceasedDateTime']}")
        for key in ("period", "performedPeriod"):
            if key in resource and _moment(resource[key]["start"]) > _moment(
                    resource[key]["end"]):
                problems.append(f"{rtype}.{key} ends before it starts")
        if "abatementDateTime" in resource and resource["abatementDateTime"] < resource[
                "onsetDateTime"]:
            problems.append(f"{rtype} abates before onset")
        if rtype == "Encounter":
            start, end = _moment(resource["period"]["start"]), _moment(resource["period"]["end"])
            for part in ("location", "participant"):
                for item in resource[part]:
                    if _moment(item["period"]["start"]) < start or _moment(
                            item["period"]["end"]) > end:
                        problems.append(f"Encounter.{part} period outside the encounter")
    return problems


@pytest.fixture(scope="session")
def hospital() -> Resource:
    return reference_bundle(SEED)


@pytest.fixture(scope="session")
def shared_ids(hospital: Resource) -> set[str]:
    return {e["request"]["url"] for e in hospital["entry"]}


@pytest.fixture(scope="session")
def sample() -> list[Resource]:
    """``SAMPLE`` patients of seed ``SEED``: the bundles most tests look at."""
    return list(generate(SAMPLE, seed=SEED))


@pytest.fixture(scope="session")
def resources(sample: list[Resource]) -> list[Resource]:
    return [entry["resource"] for bundle in sample for entry in bundle["entry"]]


@pytest.fixture(scope="session")
def by_type(resources: list[Resource]) -> Callable[[str], list[Resource]]:
    def select(resource_type: str) -> list[Resource]:
        return [r for r in resources if r["resourceType"] == resource_type]
    return select


@pytest.fixture(scope="session")
def references_in() -> Callable[[Resource], list[str]]:
    """Every reference string inside a resource."""
    return lambda resource: [ref for _, ref in walk_references(resource)]


@pytest.fixture(scope="session")
def problems(shared_ids: set[str]) -> Callable[[Resource], list[str]]:
    """The invariant checker, bound to the hospital's shared resource ids."""
    return lambda bundle: check_bundle(bundle, shared_ids)
