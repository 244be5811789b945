"""``medarchive users``: people's accounts (add, list, disable, enable, reset, totp).

Works directly on the security tables of the configured database (migration 0004); the
server picks changes up on the next login. Passwords are read from stdin, never from the
command line, where they would end up in shell history and process listings.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from medarchive.cli.context import echo_json, fail, reported, state

app = typer.Typer(help="User accounts (see docs/security.md).", no_args_is_help=True)


@contextmanager
def security_db(ctx: typer.Context) -> Iterator[object]:
    """The configured SQL database, migrated, closed afterwards."""
    from medarchive.store.sql.database import open_database
    from medarchive.store.sql.migrations import migrate

    settings = state(ctx).settings()
    if settings.database_url.startswith("memory:"):
        fail("accounts need a SQL database (sqlite:/// or postgresql://), not memory://")
    db = open_database(settings.database_url)
    try:
        migrate(db)
        yield db
    finally:
        db.close()


def accounts(db: object):  # type: ignore[no-untyped-def]
    from medarchive.app import utc_now
    from medarchive.security.accounts import Accounts
    return Accounts(db, utc_now)  # type: ignore[arg-type]


def audit_admin(db: object, detail: str) -> None:
    """Record an administrative change in the audit trail (as the local operating-system user);
    raises if it cannot be written, so the command fails loudly."""
    import getpass

    from medarchive.app import utc_now
    from medarchive.security.actor import Actor
    from medarchive.security.audit import AuditTrail
    from medarchive.security.audit_events import audit_event
    who = Actor("system", f"cli:{getpass.getuser()}", "administrator", ())
    trail = AuditTrail(db, utc_now)  # type: ignore[arg-type]
    try:
        trail.record(audit_event(who, "admin", utc_now(), status=200, detail=detail))
    finally:
        trail.close()  # its writer indexes the event before the database is closed


def read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))


@app.command("add")
def add(ctx: typer.Context, username: str,
        role: Annotated[str, typer.Option(help="Role, e.g. physician, nurse, administrator.")],
        password_stdin: Annotated[bool, typer.Option(
            "--password-stdin", help="Read the password from the first line of stdin.")] = False,
        patient: Annotated[str | None, typer.Option(
            help="Patient id a patient user may see.")] = None) -> None:
    """Create a user with a role and a password (argon2id; see the policy in docs)."""
    password = read_password(password_stdin)
    with reported(), security_db(ctx) as db:
        user = accounts(db).add_user(username, role, password, patient_id=patient)
        audit_admin(db, f"users add {username} role={role}")
    typer.echo(f"user {user.username} added with role {user.role}")


@app.command("list")
def list_users(ctx: typer.Context,
               json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False) -> None:
    """List users with role, status and two-factor enrolment."""
    with reported(), security_db(ctx) as db:
        found = accounts(db).users()
    if json:
        echo_json([{"username": u.username, "role": u.role, "patient": u.patient_id,
                    "disabled": u.disabled, "totp": u.totp_enrolled,
                    "locked_until": u.locked_until} for u in found])
        return
    for u in found:
        flags = " ".join(f for f, on in (("disabled", u.disabled), ("totp", u.totp_enrolled))
                         if on)
        typer.echo(f"{u.username}\t{u.role}\t{flags}".rstrip())


@app.command("disable")
def disable(ctx: typer.Context, username: str) -> None:
    """Refuse all further logins of a user (existing tokens expire on their own)."""
    with reported(), security_db(ctx) as db:
        accounts(db).set_disabled(username, True)
        audit_admin(db, f"users disable {username}")
    typer.echo(f"user {username} disabled")


@app.command("enable")
def enable(ctx: typer.Context, username: str) -> None:
    """Allow a disabled user to log in again."""
    with reported(), security_db(ctx) as db:
        accounts(db).set_disabled(username, False)
        audit_admin(db, f"users enable {username}")
    typer.echo(f"user {username} enabled")


@app.command("reset")
def reset(ctx: typer.Context, username: str,
          password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False) -> None:
    """Set a new password and clear the lockout."""
    password = read_password(password_stdin)
    with reported(), security_db(ctx) as db:
        accounts(db).reset_password(username, password)
        audit_admin(db, f"users reset {username}")
    typer.echo(f"password of {username} reset")


@app.command("totp")
def totp(ctx: typer.Context, username: str) -> None:
    """Enrol a user in two-factor login; prints the otpauth:// URI for an authenticator app."""
    from medarchive.security.totp import provisioning_uri
    with reported(), security_db(ctx) as db:
        secret = accounts(db).enroll_totp(username)
        audit_admin(db, f"users totp {username}")
    typer.echo(provisioning_uri(secret, username))


def access(db: object):  # type: ignore[no-untyped-def]
    from medarchive.app import utc_now
    from medarchive.security.access import Access
    return Access(db, utc_now)  # type: ignore[arg-type]


@app.command("entitle")
def entitle(ctx: typer.Context, username: str,
            label: Annotated[list[str], typer.Option(
                help="Security label code: R, V (includes R), HIV, PSY, PSYTHPN, ETH, SDV...; "
                     "repeat for several.")],
            revoke: Annotated[bool, typer.Option(
                "--revoke", help="Withdraw the labels instead.")] = False) -> None:
    """Entitle a user to see resources carrying security labels (or --revoke)."""
    with reported(), security_db(ctx) as db:
        if revoke:
            access(db).revoke(username, label)
        else:
            access(db).entitle(username, label)
        audit_admin(db, f"users entitle {username} {'revoke' if revoke else 'grant'} "
                        f"{','.join(label)}")
        now = access(db).entitlements(username)
    typer.echo(f"{username} is entitled to: {', '.join(now) or 'no labels'}")


@app.command("relate")
def relate(ctx: typer.Context, username: str,
           department: Annotated[list[str] | None, typer.Option(
               help="Organization id of the user's department; repeat for several.")] = None,
           practitioner: Annotated[list[str] | None, typer.Option(
               help="Practitioner id of the person; repeat for several.")] = None) -> None:
    """Set the attributes relationship rules use (each given option replaces its values;
    an empty value clears them)."""
    with reported(), security_db(ctx) as db:
        for name, values in (("department", department), ("practitioner", practitioner)):
            if values is not None:
                access(db).set_attribute(username, name, [v for v in values if v])
                audit_admin(db, f"users relate {username} {name}={','.join(values)}")
        found = access(db).attributes(username)
    for name, values in sorted(found.items()):
        typer.echo(f"{name}\t{','.join(values)}")


DEMO_USERS = (("admin", "administrator"), ("doctor", "physician"))


def demo_logins(database_url: str, base: str) -> list[str]:
    """Create the demo's administrator and physician (once) and say how to log in."""
    import secrets

    from medarchive.demo.access import relate_demo_user
    from medarchive.errors import Conflict
    from medarchive.store.sql.database import open_database
    from medarchive.store.sql.migrations import migrate

    if database_url.startswith("memory:"):
        return []
    db = open_database(database_url)
    lines = []
    try:
        migrate(db)
        relate_demo_user(access(db), "doctor")  # related to the demo patients
        for username, role in DEMO_USERS:
            password = "demo-" + secrets.token_urlsafe(12)
            try:
                accounts(db).add_user(username, role, password)
            except Conflict:
                lines.append(f"  {username} ({role}): exists; `medarchive users reset "
                             f"{username}` sets a new password")
                continue
            lines.append(f"  {username} ({role}): password {password}")
    finally:
        db.close()
    lines.append(f"log in: curl -s -X POST {base}/auth/login -d username=doctor "
                 "-d password=... ; then send Authorization: Bearer <access_token>")
    return lines
