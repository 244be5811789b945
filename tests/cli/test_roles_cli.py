"""``medarchive roles list|show`` and ``users add --role`` with a role file (setting
``role_file``), on SQLite and PostgreSQL where accounts are involved."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from medarchive.cli.main import app
from medarchive.security.authz import ROLES
from medarchive.security.roles import builtin, install, load_role_file

WARD_CLERK = """
[roles.ward_clerk]
description = "Ward clerk"
relationship = false
grants = [{ types = ["Patient", "Encounter"], letters = "rs" }]
"""
PASSWORD = "a long enough passphrase"


@pytest.fixture(autouse=True)
def builtin_afterwards() -> Iterator[None]:
    yield
    install(builtin())  # each command installs its table; leave the process as it was


def run(*args: str, role_file: Path | str = "", stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), input=stdin,
                              env={"MEDARCHIVE_ROLE_FILE": str(role_file)})


def roles_file(tmp_path: Path, text: str = WARD_CLERK) -> Path:
    path = tmp_path / "roles.toml"
    path.write_text(text)
    return path


def test_list_and_show_the_builtin_roles() -> None:
    listed = run("roles", "list")
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0] == "# built-in roles (no role_file)"
    assert [line.split("\t")[0] for line in lines[1:]] == [r for r in ROLES if r != "system"]
    assert "nurse\tbuilt-in\trelationship\t" in listed.stdout
    shown = run("roles", "show", "auditor")
    assert shown.exit_code == 0 and "rs on AuditEvent" in shown.stdout


def test_show_with_a_role_file(tmp_path: Path) -> None:
    path = roles_file(tmp_path)
    listed = run("roles", "list", role_file=path)
    assert listed.stdout.startswith(f"# role file {path} (sha256 ")
    assert "ward_clerk\tfile\t-\tWard clerk" in listed.stdout
    data = json.loads(run("roles", "show", "ward_clerk", "--format", "json",
                          role_file=path).stdout)
    assert data["source"] == str(path) and len(data["sha256"]) == 64
    assert data["roles"] == [{"name": "ward_clerk", "origin": "file", "relationship": False,
                              "description": "Ward clerk", "grants": [
                                  {"letters": "rs", "types": ["Encounter", "Patient"]}]}]


def test_exported_table_loads_back_as_the_same_roles(tmp_path: Path, spec: object) -> None:
    exported = run("roles", "show", "--format", "toml")
    assert exported.exit_code == 0
    path = roles_file(tmp_path, exported.stdout)
    loaded = load_role_file(path, spec.resource_types)  # type: ignore[attr-defined]
    assert {n: (r.grants, r.relationship) for n, r in loaded.roles.items()} == \
        {n: (r.grants, r.relationship) for n, r in builtin().roles.items()}
    again = run("roles", "show", "--format", "toml", role_file=path)
    assert again.stdout.split("\n", 2)[2] == exported.stdout.split("\n", 2)[2]  # bar source


def test_show_refuses_unknown_roles_and_formats() -> None:
    unknown = run("roles", "show", "ward_clerk")
    assert unknown.exit_code == 1 and "unknownrole'ward_clerk';roles:administrator" \
        in "".join(unknown.output.split())
    assert run("roles", "show", "--format", "xml").exit_code == 1


def test_a_bad_role_file_stops_every_command(tmp_path: Path) -> None:
    path = roles_file(tmp_path, WARD_CLERK.replace('"Encounter"', '"Encountre"'))
    for args in (("roles", "list"), ("users", "list"), ("db", "migrate")):
        result = run(*args, role_file=path)
        assert result.exit_code == 1, args
        expected = f"role file {path}: role ward_clerk: grants[1]: types: 'Encountre' is " \
                   "not an R4 resource type"
        assert "".join(expected.split()) in "".join(result.output.split())  # console wraps


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_users_add_takes_the_effective_roles(tmp_path: Path, database_url: str) -> None:
    path = roles_file(tmp_path)
    refused = run("--database-url", database_url, "users", "add", "wendy", "--role",
                  "ward_clerk", "--password-stdin", stdin=PASSWORD + "\n")
    assert refused.exit_code == 1
    assert "unknownrole'ward_clerk';roles:administrator,physician" in "".join(
        refused.output.split())
    added = run("--database-url", database_url, "users", "add", "wendy", "--role",
                "ward_clerk", "--password-stdin", role_file=path, stdin=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    assert "wendy\tward_clerk" in run("--database-url", database_url, "users", "list").stdout
    system = run("--database-url", database_url, "users", "add", "sam", "--role", "system",
                 "--password-stdin", role_file=path, stdin=PASSWORD + "\n")
    assert system.exit_code == 1 and "device,ward_clerk" in "".join(system.output.split())
