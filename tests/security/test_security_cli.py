"""The security commands: users, clients and audit verify (the stable interfaces of issue 4)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner, Result

from medarchive.cli.main import app
from medarchive.security.actor import Actor
from medarchive.security.audit import AuditTrail
from medarchive.security.audit_events import audit_event
from medarchive.store.sql.database import open_database

pytestmark = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
PASSWORD = "a long enough passphrase"


def run(database_url: str, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, ["--database-url", database_url, *args], input=stdin)


def test_users_and_clients(database_url: str) -> None:
    added = run(database_url, "users", "add", "alice", "--role", "physician",
                "--password-stdin", stdin=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    weak = run(database_url, "users", "add", "bob", "--role", "nurse", "--password-stdin",
               stdin="short\n")
    assert weak.exit_code == 1
    again = run(database_url, "users", "add", "alice", "--role", "nurse", "--password-stdin",
                stdin=PASSWORD + "\n")
    assert again.exit_code == 1
    assert run(database_url, "users", "disable", "alice").exit_code == 0
    listed = run(database_url, "users", "list", "--json")
    users = json.loads(listed.stdout)
    assert users[0]["username"] == "alice" and users[0]["disabled"] is True
    out = run(database_url, "clients", "add", "lab", "--scope", "system/*.rs", "--json")
    created = json.loads(out.stdout)
    assert created["client_id"].startswith("c-") and len(created["client_secret"]) > 30
    bad = run(database_url, "clients", "add", "x", "--scope", "openid")
    assert bad.exit_code == 1
    shown = [json.loads(line) for line in run(database_url, "audit", "show").stdout.splitlines()]
    details = [e["outcomeDesc"] for e in shown]
    assert [e["outcome"] for e in shown] == ["0", "4", "4", "0", "0", "4"]  # refusals too
    assert details[0].startswith("users add alice") and "clients add" in details[4]


def test_audit_verify_names_the_bad_record(database_url: str) -> None:
    assert run(database_url, "audit", "verify").exit_code == 0
    db = open_database(database_url)
    try:
        trail = AuditTrail(db, lambda: datetime(2026, 1, 1, tzinfo=UTC))
        for i in range(4):
            trail.record(audit_event(Actor("user", "u", "nurse", ()), "read", trail.now(),
                                     status=200, entities=[f"Patient/{i}"]))
        good = run(database_url, "audit", "verify")
        assert good.exit_code == 0 and "4 records" in good.output
        with db.writing() as cur:
            cur.execute(db.sql("UPDATE audit_event SET body = ? WHERE seq = 3"), ("{}",))
    finally:
        db.close()
    broken = run(database_url, "audit", "verify")
    assert broken.exit_code == 1
    assert "record 3" in broken.output
