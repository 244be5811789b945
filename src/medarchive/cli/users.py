"""``medarchive users``: people's accounts (add, list, disable, enable, reset, totp).

Works directly on the security tables of the configured database (migration 0004); the
server picks changes up on the next login (a disabled user's tokens at their next revocation
check). Passwords are read from stdin, never from the command line, where they would end up in
shell history and process listings. Each change and its AuditEvent are one transaction
(``admin_change``); a refused change is audited as a failure.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

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


def cli_actor():  # type: ignore[no-untyped-def]
    """The actor of a command: the local operating-system user, as ``cli:<name>``."""
    import getpass

    from medarchive.security.actor import Actor
    return Actor("system", f"cli:{getpass.getuser()}", "administrator", ())


def audit_admin(db: object, detail: str) -> None:
    """Record an administrative change in the audit trail (as the local operating-system user);
    raises if it cannot be written, so the command fails loudly."""
    from medarchive.app import utc_now
    from medarchive.security.audit import AuditTrail
    from medarchive.security.audit_events import audit_event
    trail = AuditTrail(db, utc_now)  # type: ignore[arg-type]
    try:
        trail.record(audit_event(cli_actor(), "admin", utc_now(), status=200, detail=detail))
    finally:
        trail.close()  # its writer indexes the event before the database is closed


class Joined:
    """The database ``db`` seen through one open write transaction ``cur``: ``writing`` and
    ``reading`` both reuse it, so objects written against a Database (Accounts, Access, Apps)
    make their changes, and see them, inside the caller's transaction. ``detail``: what the
    change's AuditEvent will say (the block may add to it, e.g. a new client's id)."""

    def __init__(self, db: Any, cur: Any, detail: str) -> None:
        self.detail = detail
        self.dialect = db.dialect
        self.encryption = db.encryption
        self.sql = db.sql
        self._cur = cur

    @contextmanager
    def writing(self) -> Iterator[Any]:
        yield self._cur

    reading = writing

    def close(self) -> None:
        """The transaction's owner closes the database."""


def refusal_status(exc: BaseException) -> int:
    """The HTTP-like status an audited refusal records (4xx: the request was wrong)."""
    from medarchive.errors import FhirError
    return exc.status if isinstance(exc, FhirError) else 400


@contextmanager
def admin_change(db: Any, interaction: str, detail: str) -> Iterator[Joined]:
    """One write transaction for an administrative change and its AuditEvent (docs/security.md
    "Fail closed": no change without its record, no record of a change that did not happen).
    The block makes its changes through the yielded database; when it raises, they roll back
    and the refusal is recorded as a failure (outcome 4, the reason in ``outcomeDesc``)
    before the error goes on. ``interaction``: ``admin`` or ``export``."""
    from medarchive.app import utc_now
    from medarchive.security.audit import AuditTrail
    from medarchive.security.audit_events import audit_event
    trail = AuditTrail(db, utc_now)
    try:
        try:
            with db.writing() as cur:
                joined = Joined(db, cur, detail)
                yield joined
                trail.append(cur, [audit_event(cli_actor(), interaction, utc_now(),
                                               status=200, detail=joined.detail)])
        except Exception as exc:
            trail.record(audit_event(cli_actor(), interaction, utc_now(),
                                     status=refusal_status(exc),
                                     detail=f"{detail} refused: {exc}"))
            raise
    finally:
        trail.close()  # its writer indexes the events before the database is closed


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
    with reported(), security_db(ctx) as db, \
            admin_change(db, "admin", f"users add {username} role={role}") as joined:
        user = accounts(joined).add_user(username, role, password, patient_id=patient)
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
    """Refuse further logins of a user and revoke its tokens (UI sessions, access and refresh
    tokens)."""
    with reported(), security_db(ctx) as db, \
            admin_change(db, "admin", f"users disable {username}") as joined:
        accounts(joined).set_disabled(username, True)
    typer.echo(f"user {username} disabled")


@app.command("enable")
def enable(ctx: typer.Context, username: str) -> None:
    """Allow a disabled user to log in again."""
    with reported(), security_db(ctx) as db, \
            admin_change(db, "admin", f"users enable {username}") as joined:
        accounts(joined).set_disabled(username, False)
    typer.echo(f"user {username} enabled")


@app.command("reset")
def reset(ctx: typer.Context, username: str,
          password_stdin: Annotated[bool, typer.Option("--password-stdin")] = False) -> None:
    """Set a new password and clear the lockout."""
    password = read_password(password_stdin)
    with reported(), security_db(ctx) as db, \
            admin_change(db, "admin", f"users reset {username}") as joined:
        accounts(joined).reset_password(username, password)
    typer.echo(f"password of {username} reset")


@app.command("totp")
def totp(ctx: typer.Context, username: str) -> None:
    """Enrol a user in two-factor login; prints the otpauth:// URI for an authenticator app."""
    from medarchive.security.totp import provisioning_uri
    with reported(), security_db(ctx) as db, \
            admin_change(db, "admin", f"users totp {username}") as joined:
        secret = accounts(joined).enroll_totp(username)
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
    detail = f"users entitle {username} {'revoke' if revoke else 'grant'} {','.join(label)}"
    with reported(), security_db(ctx) as db:
        with admin_change(db, "admin", detail) as joined:
            if revoke:
                access(joined).revoke(username, label)
            else:
                access(joined).entitle(username, label)
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
                with admin_change(db, "admin", f"users relate {username} "
                                               f"{name}={','.join(values)}") as joined:
                    access(joined).set_attribute(username, name, [v for v in values if v])
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
