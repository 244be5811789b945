"""Administrative commands and their audit: ``users`` and ``clients`` changes commit with their
AuditEvent or not at all, refused attempts are audited as failures, and ``clients
disable|enable|remove|rotate-secret`` revoke the client's outstanding tokens (SQLite and
PostgreSQL)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from audit_down import REFUSE
from medarchive.app import utc_now
from medarchive.cli.main import app
from medarchive.errors import Unauthorized
from medarchive.security.accounts import Accounts
from medarchive.security.tokens import TokenService
from medarchive.store.sql.database import Database, open_database
from medarchive.store.sql.migrations import migrate

pytestmark = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
PASSWORD = "a long enough passphrase"
ISSUER = "http://testserver/fhir"


def run(database_url: str, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(app, ["--database-url", database_url, *args], input=stdin)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    opened = open_database(database_url)
    migrate(opened)
    yield opened
    opened.close()


def events(database_url: str) -> list[dict[str, Any]]:
    shown = run(database_url, "audit", "show", "--limit", "1000")
    return [json.loads(line) for line in shown.stdout.splitlines()]


def add_user(database_url: str, name: str, password: str = PASSWORD,
             role: str = "physician") -> Result:
    return run(database_url, "users", "add", name, "--role", role, "--password-stdin",
               stdin=password + "\n")


def test_changes_and_refusals_are_audited(database_url: str) -> None:
    assert add_user(database_url, "alice").exit_code == 0
    assert add_user(database_url, "bob", "short").exit_code == 1
    assert add_user(database_url, "carol", role="emperor").exit_code == 1
    assert add_user(database_url, "alice").exit_code == 1  # taken
    assert run(database_url, "users", "disable", "nobody").exit_code == 1
    assert run(database_url, "users", "reset", "alice", "--password-stdin",
               stdin="alice\n").exit_code == 1
    assert run(database_url, "clients", "add", "x", "--scope", "openid").exit_code == 1
    assert run(database_url, "users", "disable", "alice").exit_code == 0
    found = [(e["outcome"], e["outcomeDesc"], e["agent"][0]["who"]["identifier"]["value"])
             for e in events(database_url)]
    assert [(outcome, desc.split(" refused")[0].split(";")[0]) for outcome, desc, _ in found] == [
        ("0", "users add alice role=physician"), ("4", "users add bob role=physician"),
        ("4", "users add carol role=emperor"), ("4", "users add alice role=physician"),
        ("4", "users disable nobody"), ("4", "users reset alice"),
        ("4", "clients add name=x scope=openid"), ("0", "users disable alice")]
    assert "status=404" in found[4][1] and "status=409" in found[3][1]
    assert all(who.startswith("cli:") for _, _, who in found)


def test_no_change_without_its_audit_record(database_url: str, db: Database) -> None:
    assert add_user(database_url, "alice").exit_code == 0
    with db.writing() as cur:
        for statement in REFUSE[db.dialect]:
            cur.execute(statement)
    assert add_user(database_url, "dave").exit_code != 0
    assert run(database_url, "users", "disable", "alice").exit_code != 0
    assert run(database_url, "clients", "add", "lab", "--scope", "system/*.rs").exit_code != 0
    accounts = Accounts(db, utc_now)
    assert [u.username for u in accounts.users()] == ["alice"]
    assert not accounts.user("alice").disabled and accounts.clients() == []


def test_client_lifecycle_revokes_tokens(database_url: str, db: Database) -> None:
    out = run(database_url, "clients", "add", "lab", "--scope", "system/*.rs", "--json")
    created = json.loads(out.stdout)
    client_id, secret = created["client_id"], created["client_secret"]
    accounts = Accounts(db, utc_now)

    def token() -> str:
        issued = TokenService(db, ISSUER, utc_now).issue(
            client_id, kind="client", role="integration", scope="system/*.rs",
            client_id=client_id)
        return str(issued["access_token"])

    def refused(access_token: str) -> bool:
        try:
            TokenService(db, ISSUER, utc_now).verify(access_token)
        except Unauthorized:
            return True
        return False

    before = token()
    assert not refused(before)
    assert run(database_url, "clients", "disable", "lab").exit_code == 0
    assert accounts.client(client_id).disabled and refused(before)
    with pytest.raises(Unauthorized):
        accounts.check_client_secret(client_id, secret)
    assert run(database_url, "clients", "enable", client_id).exit_code == 0
    assert accounts.check_client_secret(client_id, secret).name == "lab"
    assert refused(before)  # enabling does not revive a revoked token
    rotated = run(database_url, "clients", "rotate-secret", "lab", "--json")
    shown = json.loads(rotated.stdout)
    assert shown["client_id"] == client_id and shown["client_secret"] != secret
    with pytest.raises(Unauthorized):
        accounts.check_client_secret(client_id, secret)
    assert accounts.check_client_secret(client_id, shown["client_secret"]).name == "lab"
    assert run(database_url, "clients", "remove", "lab").exit_code == 0
    assert accounts.clients() == []
    assert run(database_url, "clients", "remove", "lab").exit_code == 1
    audited = [e["outcomeDesc"] for e in events(database_url)][1:]
    assert [d.split(";")[0] for d in audited] == [
        f"clients disable lab client_id={client_id}",
        f"clients enable {client_id} client_id={client_id}",
        f"clients rotate-secret lab client_id={client_id}",
        f"clients remove lab client_id={client_id}",
        "clients remove lab refused: no client 'lab'"]


def test_a_name_shared_by_two_clients_needs_the_id(database_url: str) -> None:
    for _ in range(2):
        assert run(database_url, "clients", "add", "lab", "--scope", "system/*.rs").exit_code == 0
    ambiguous = run(database_url, "clients", "disable", "lab")
    assert ambiguous.exit_code == 1 and "give the client id" in ambiguous.output
