"""``medarchive keys``: status, shred (audited, then unreadable), rotate and reencrypt, run as
commands against a SQLite database with the local key file."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from click.testing import Result
from search_helpers import put, spec
from typer.testing import CliRunner

from medarchive.app import build_encryption, utc_now
from medarchive.cli.main import app
from medarchive.crypto.envelope import Erased
from medarchive.fhir.search.index import build_indexer
from medarchive.security.audit import AuditTrail
from medarchive.settings import Settings
from medarchive.store import open_store

ANN = {"resourceType": "Patient", "id": "ann", "name": [{"family": "Smithers"}]}
OBS = {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"},
       "subject": {"reference": "Patient/ann"}}


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'cli.db'}", encryption="on",
                        encryption_key_file=str(tmp_path / "cli.kek"))
    monkeypatch.setenv("MEDARCHIVE_ENCRYPTION", "on")
    monkeypatch.setenv("MEDARCHIVE_ENCRYPTION_KEY_FILE", settings.encryption_key_file)
    store = open_store(settings.database_url, build_indexer(spec()),
                       encryption=build_encryption(settings, spec()))
    put(store, ANN, OBS)
    store.close()
    return settings


def run(settings: Settings, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(app, ["--database-url", settings.database_url, "keys", *args],
                              input=input)


def test_status_rotate_reencrypt(env: Settings) -> None:
    status = run(env, "status", "--json")
    assert status.exit_code == 0, status.output
    report = orjson.loads(status.output)
    assert report["keys"] == {"blind-index active": 1, "patient active": 1}
    assert (report["sealed_versions"], report["plaintext_versions"]) == (2, 0)
    rotated = run(env, "rotate")
    assert rotated.exit_code == 0 and "local-2" in rotated.output
    again = run(env, "reencrypt", "--destroy-old")
    assert again.exit_code == 0 and "re-sealed 2 versions" in again.output
    assert orjson.loads(run(env, "status", "--json").output)["by_kek"] == {"local-2": 2}


def test_shred_is_audited_and_final(env: Settings) -> None:
    refused = run(env, "shred", "ann", input="n\n")
    assert refused.exit_code == 1 and "nothing shredded" in refused.output
    done = run(env, "shred", "Patient/ann", "--yes")
    assert done.exit_code == 0, done.output
    assert "2 stored versions of 2 resources" in " ".join(done.output.split())
    store = open_store(env.database_url, build_indexer(spec()),
                       encryption=build_encryption(env, spec()))
    try:
        with pytest.raises(Erased):
            store.read("Observation", "o1")
        events = AuditTrail(store.db, utc_now).events()  # type: ignore[attr-defined]
    finally:
        store.close()
    assert any("keys shred Patient/ann" in str(event) for _, event in events)
    twice = run(env, "shred", "ann", "--yes")
    assert twice.exit_code == 1 and "no data key to shred" in twice.output


def test_keys_need_encryption_on(env: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDARCHIVE_ENCRYPTION", "off")
    result = run(env, "status")
    assert result.exit_code == 1 and "encryption is off" in result.output
