"""The server-side ``$import`` job with worker processes (started with ``spawn``, kept for the
whole job), on an encrypted SQLite and PostgreSQL store; and the prepared-rows write refusing a
body it could not seal."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from medarchive.app import build_services
from medarchive.fhir.search.parse import parse_search
from medarchive.service.bulk.import_jobs import run_import
from medarchive.service.bulk.inputs import InputPolicy
from medarchive.service.bulk.jobs import Job
from medarchive.settings import load_settings
from medarchive.store.base import Change


@pytest.fixture(params=["sqlite", "postgresql"])
def services(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    url = f"sqlite:///{tmp_path / 'jobs.db'}" if request.param == "sqlite" else \
        str(request.getfixturevalue("postgres_schema_url"))
    built = build_services(load_settings({"database_url": url, "auth": "off",
                                          "encryption_key_file": str(tmp_path / "kek.key")},
                                         environ={}))
    yield built
    built.close()


def write(path: Path, resources: list[dict[str, Any]]) -> str:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))
    return path.as_uri()


def test_an_import_job_loads_through_spawned_workers(services: Any, tmp_path: Path) -> None:
    folder = tmp_path / "import"
    folder.mkdir()
    patients = write(folder / "P.ndjson", [
        {"resourceType": "Patient", "id": f"p{n}", "name": [{"family": f"Doe{n}"}]}
        for n in range(30)] + [{"resourceType": "Patient", "gender": "nonsense"}])
    observations = write(folder / "O.ndjson", [
        {"resourceType": "Observation", "id": f"o{n}", "status": "final",
         "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
         "subject": {"reference": f"Patient/p{n % 30}"}} for n in range(45)])
    job = Job("job1", "import", "in-progress", "/fhir/$import",
              {"inputs": [{"type": "Patient", "url": patients},
                          {"type": "Observation", "url": observations}]},
              "system:test", {}, 0, 0)
    seen: list[int] = []

    def proceed(current: Job) -> bool:
        seen.append(current.progress)
        return True

    out = tmp_path / "job"
    out.mkdir()
    done = run_import(services.repository, job, InputPolicy(folder), out, proceed, 2)
    assert done is not None and done.status == "completed" and set(seen) == {0, 1}
    assert [(o["count"], o["refused"]) for o in done.output] == [(30, 1), (45, 0)]
    repository = services.repository
    query = parse_search(repository.spec, "Observation",
                         [("subject", "Patient/p3"), ("code", "http://loinc.org|8867-4")]).query
    assert sorted(v.id for v in repository.search(query)) == ["o3", "o33"]
    query = parse_search(repository.spec, "Patient", [("family", "Doe7")]).query
    assert [v.id for v in repository.search(query)] == ["p7"]  # blind index rows
    assert repository.read("Patient", "p7").resource()["meta"]["versionId"] == "1"


def test_prepared_writes_need_an_owner_to_seal_with(services: Any) -> None:
    resource = {"resourceType": "Patient", "id": "x"}
    change = Change("Patient", "x", 1, 0, datetime.now(UTC), False, orjson.dumps(resource),
                    resource)
    with pytest.raises(ValueError, match="owner"):
        services.store.write_prepared([change], [[]], [None])
    assert services.store.read("Patient", "x") is None
