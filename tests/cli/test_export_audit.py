"""``export``, ``views run`` and ``warehouse build`` take data out of the record, so each is an
export AuditEvent by ``cli:<os user>``, written before the data is released; when it cannot be
written there is no export (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from audit_down import REFUSE
from medarchive.app import build_services
from medarchive.cli.main import app
from medarchive.settings import Settings

pytestmark = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)


def run(database_url: str, *args: str, **env: str) -> Result:
    return CliRunner().invoke(app, ["--database-url", database_url, *args], env=env)


def exports(database_url: str) -> list[dict[str, Any]]:
    shown = run(database_url, "audit", "show", "--limit", "1000").stdout.splitlines()
    return [e for e in map(json.loads, shown) if e["subtype"][0]["code"] == "export"]


@pytest.fixture
def loaded(database_url: str) -> str:
    services = build_services(Settings(database_url=database_url))
    try:
        for n in range(2):
            services.submit({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": {"resourceType": "Patient", "id": f"p{n}", "gender": "female"},
                 "request": {"method": "PUT", "url": f"Patient/p{n}"}}]})
    finally:
        services.close()
    return database_url


def audit_down(database_url: str) -> None:
    from medarchive.store.sql.database import open_database
    db = open_database(database_url)
    try:
        with db.writing() as cur:
            for statement in REFUSE[db.dialect]:
                cur.execute(statement)
    finally:
        db.close()


def test_export_is_audited_and_fails_closed(loaded: str, tmp_path: Path) -> None:
    done = run(loaded, "export", "--out", str(tmp_path / "a"))
    assert done.exit_code == 0, done.output
    assert (tmp_path / "a" / "Patient.ndjson").read_text().count("\n") == 2
    [event] = exports(loaded)
    assert event["outcome"] == "0" and event["action"] == "R"
    assert event["agent"][0]["who"]["identifier"]["value"].startswith("cli:")
    assert "resources=2 Patient=2" in event["outcomeDesc"]
    assert event["entity"][0]["description"] == "types=*"
    refused = run(loaded, "export", "--out", str(tmp_path / "b"), "--type", "Nonsense")
    assert refused.exit_code == 1
    assert exports(loaded)[-1]["outcome"] == "4"
    audit_down(loaded)
    blocked = run(loaded, "export", "--out", str(tmp_path / "c"), "--type", "Patient")
    assert blocked.exit_code != 0
    assert list((tmp_path / "c").iterdir()) == []  # no export without its audit record


def test_views_and_warehouse_are_audited(loaded: str, tmp_path: Path) -> None:
    out = tmp_path / "rows.csv"
    viewed = run(loaded, "views", "run", "patient_demographics", "--out", str(out))
    assert viewed.exit_code == 0, viewed.output
    warehouse = str(tmp_path / "wh.duckdb")
    built = run(loaded, "warehouse", "build", MEDARCHIVE_WAREHOUSE_PATH=warehouse)
    assert built.exit_code == 0, built.output
    found = exports(loaded)
    assert [e["outcomeDesc"].split(" ")[:2] for e in found] == [["views", "run"],
                                                                ["warehouse", "build"]]
    assert found[0]["entity"][0]["description"] == \
        "view=patient_demographics resource=Patient"
    assert "patient_demographics" in found[1]["entity"][0]["description"]
    audit_down(loaded)
    out.unlink()
    blocked = run(loaded, "views", "run", "patient_demographics", "--out", str(out))
    assert blocked.exit_code != 0 and not out.exists()
