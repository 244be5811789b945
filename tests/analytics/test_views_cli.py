"""``medarchive import --bulk``, ``export``, ``views add|list|run`` and ``warehouse build|sql``
end to end on a SQLite database in a temporary folder."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import duckdb
import orjson
from typer.testing import CliRunner

from medarchive.cli.main import app
from medarchive.demo import generate_ndjson

VIEW = {"resourceType": "ViewDefinition", "name": "flat_obs", "resource": "Observation",
        "select": [{"column": [
            {"name": "id", "path": "getResourceKey()"},
            {"name": "subject", "path": "subject.getReferenceKey(Patient)"},
            {"name": "code", "path": "code.coding.first().code"},
            {"name": "value", "path": "value.ofType(Quantity).value"}]}]}


def test_bulk_import_views_and_warehouse(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    resources = list(generate_ndjson(2, seed=3))
    observations = sum(r["resourceType"] == "Observation" for r in resources)
    (data / "all.ndjson").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))
    env = {"MEDARCHIVE_DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}",
           "MEDARCHIVE_AUTH": "off", "MEDARCHIVE_WAREHOUSE_PATH": str(tmp_path / "w.duckdb")}
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(app, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result.stdout

    run("import", "--bulk", "--processes", "0", str(data))
    view_file = tmp_path / "view.json"
    view_file.write_bytes(orjson.dumps(VIEW))
    run("views", "add", str(view_file))
    assert "flat_obs" in run("views", "list")
    table = list(csv.reader(io.StringIO(run("views", "run", "flat_obs"))))
    assert table[0] == ["id", "subject", "code", "value"] and len(table) == observations + 1
    out = tmp_path / "obs.parquet"
    run("views", "run", "flat_obs", "--input", str(data), "--engine", "python", "--format",
        "parquet", "--out", str(out))
    assert duckdb.sql(f"SELECT count(*) FROM '{out}'").fetchall() == [(observations,)]
    exported = tmp_path / "export"
    run("export", "--out", str(exported))
    assert (exported / "Observation.ndjson").read_bytes().count(b"\n") == observations
    assert not list(exported.glob("*.partial"))
    lines = run("views", "run", str(view_file), "--input", str(exported), "--format", "ndjson")
    assert len(lines.splitlines()) == observations
    run("warehouse", "build")
    printed = run("warehouse", "sql", "SELECT count(*) AS n FROM flat_obs")
    assert str(observations) in printed
    assert "unchanged" in runner.invoke(app, ["warehouse", "build"], env=env).output
    bad = runner.invoke(app, ["warehouse", "sql", "SELEC"], env=env)
    assert bad.exit_code == 1
    missing = runner.invoke(app, ["views", "run", "no_such_view"], env=env)
    assert missing.exit_code == 1
