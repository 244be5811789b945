"""The proof of issue 5: after loading the demo hospital and Synthea records with encryption
at rest on, neither the SQLite file with its WAL nor a ``pg_dump`` of the PostgreSQL schema
holds any patient's name, identifier value, phone number or birth date in plaintext.

A control run with encryption off finds the same values in the same files, so the scan is
shown to see them. Values a patient shares with plaintext that is allowed to stay readable (a
practitioner's name in the search index, a code's display text) are left out of the secrets;
so are values shorter than 5 bytes, which random ciphertext contains by chance (two-character
CJK names count). ``bytea`` columns appear in hex in a dump, so the hex of each secret is
looked for too.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from search_helpers import indexer

from medarchive.app import build_services
from medarchive.crypto.blind import blinded
from medarchive.demo import generate, reference_bundle
from medarchive.fhir.search.normalize import normalize_string
from medarchive.settings import Settings

PG_DUMP = "/usr/bin/pg_dump"
SYNTHEA = 2  # Synthea bundles loaded besides the demo patients


def _bundles(conformance: Path) -> list[dict[str, Any]]:
    synthea = sorted((conformance / "synthea" / "bundles").glob("*.json"))[:SYNTHEA]
    return [reference_bundle(), *generate(3, seed=11),
            *(json.loads(path.read_text()) for path in synthea)]


def _secrets(bundles: list[dict[str, Any]]) -> set[str]:
    """Names, identifier values, phone numbers and birth dates of every patient, minus what
    may legitimately be plaintext elsewhere."""
    found: set[str] = set()
    allowed: list[str] = []
    index = indexer()
    for bundle in bundles:
        for entry in bundle["entry"]:
            resource = entry["resource"]
            if resource["resourceType"] != "Patient":
                rtype = resource["resourceType"]
                entries = index(resource)
                allowed += [s.exact.lower() for s in entries.strings
                            if not blinded(rtype, "string", s.param)]
                allowed += [f"{t.code}\n{t.display}".lower() for t in entries.tokens
                            if not blinded(rtype, "token", t.param)]
                continue
            for name in resource.get("name", []):
                found |= {n for n in [name.get("family"), *name.get("given", [])] if n}
            found |= {i["value"] for i in resource.get("identifier", []) if "value" in i}
            found |= {t["value"] for t in resource.get("telecom", []) if "value" in t}
            if "birthDate" in resource:
                found.add(resource["birthDate"])
    plain = "\n".join(allowed)
    return {s for s in found if len(s.encode()) >= 5 and s.lower() not in plain}


def _forms(secret: str) -> set[bytes]:
    """The byte strings a secret could be stored as: as written, case-folded, normalised like
    a string index value, and as the hex of any of those (a dump's ``bytea``)."""
    texts = {secret, secret.lower(), normalize_string(secret)}
    raw = {text.encode() for text in texts}
    return raw | {r.hex().encode() for r in raw}


def _leaks(blob: bytes, secrets: set[str]) -> set[str]:
    return {s for s in secrets if any(form in blob for form in _forms(s))}


def _load(url: str, folder: Path, encryption: str, bundles: list[dict[str, Any]]) -> None:
    settings = Settings(database_url=url, auth="off", encryption=encryption,
                        encryption_key_file=str(folder / "medarchive.kek"))
    services = build_services(settings)
    try:
        for bundle in bundles:
            services.submit(bundle)
    finally:
        services.close()


def _sqlite_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())


def _pg_dump(url: str) -> bytes:
    parts = urlsplit(url)
    schema = parse_qs(parts.query)["options"][0].removeprefix("-csearch_path=")
    base = parts._replace(query="").geturl()
    return subprocess.run([PG_DUMP, "--no-owner", "--schema", schema, base], check=True,
                          capture_output=True, timeout=120).stdout


@pytest.fixture
def need(request: pytest.FixtureRequest) -> Any:
    """The ``need`` helper of tests/conftest.py (skip locally, fail under CI)."""
    for plugin in request.config.pluginmanager.get_plugins():
        if str(getattr(plugin, "__file__", "")).endswith("tests/conftest.py"):
            return plugin.need
    raise LookupError("tests/conftest.py need() not found")


@pytest.fixture(scope="module")
def bundles(conformance: Path) -> list[dict[str, Any]]:
    return _bundles(conformance)


@pytest.mark.parametrize("encryption", ["on", "off"])
def test_sqlite_file_and_wal_hold_no_patient_data(tmp_path: Path, encryption: str,
                                                  bundles: list[dict[str, Any]]) -> None:
    secrets = _secrets(bundles)
    assert len(secrets) > 20
    db = tmp_path / "proof.db"
    _load(f"sqlite:///{db}", tmp_path, encryption, bundles)
    leaks = _leaks(_sqlite_bytes(db), secrets)
    if encryption == "on":
        assert not leaks, sorted(leaks)[:20]
    else:  # the control: the scan sees plaintext when it is there
        assert len(leaks) > len(secrets) // 2


@pytest.mark.parametrize("encryption", ["on", "off"])
def test_pg_dump_holds_no_patient_data(postgres_schema_url: str, tmp_path: Path,
                                       encryption: str, bundles: list[dict[str, Any]],
                                       need: Any) -> None:
    if shutil.which(PG_DUMP) is None:
        need(f"{PG_DUMP} not found (apt-get install postgresql-client)")
    secrets = _secrets(bundles)
    _load(postgres_schema_url, tmp_path, encryption, bundles)
    leaks = _leaks(_pg_dump(postgres_schema_url), secrets)
    if encryption == "on":
        assert not leaks, sorted(leaks)[:20]
    else:
        assert len(leaks) > len(secrets) // 2
