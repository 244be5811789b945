"""``medarchive clients``: OAuth 2.0 system clients for SMART Backend Services.

``clients add NAME --scope "system/*.rs" --json`` prints ``client_id`` and ``client_secret``
(shown once; only its argon2id hash is stored). ``--jwks FILE`` registers public keys for
``private_key_jwt`` instead of, or besides, a secret.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer

from medarchive.cli.context import echo_json, fail, reported
from medarchive.cli.users import accounts, audit_admin, security_db

app = typer.Typer(help="OAuth system clients (see docs/security.md).", no_args_is_help=True)


@app.command("add")
def add(ctx: typer.Context, name: str,
        scope: Annotated[str, typer.Option(help='Scopes it may be granted, e.g. "system/*.rs".')],
        role: Annotated[str, typer.Option(help="Role of the client.")] = "integration",
        jwks: Annotated[Path | None, typer.Option(
            help="JSON Web Key Set file with the client's public keys (private_key_jwt).")
                        ] = None,
        no_secret: Annotated[bool, typer.Option(
            "--no-secret", help="No client secret (only private_key_jwt).")] = False,
        json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False
        ) -> None:
    """Register a confidential client; prints its id and secret."""
    from medarchive.security.scopes import parse_scopes
    if not parse_scopes(scope)[0]:
        fail(f"no resource scope in {scope!r} (e.g. system/*.rs)")
    keys = None
    if jwks is not None:
        keys = jwks.read_text()
        if "keys" not in orjson.loads(keys):
            fail(f"{jwks} is not a JSON Web Key Set")
    if no_secret and keys is None:
        fail("a client without a secret needs --jwks")
    with reported(), security_db(ctx) as db:
        client, secret = accounts(db).add_client(name, scope, role=role, jwks=keys,
                                                 with_secret=not no_secret)
        audit_admin(db, f"clients add {client.client_id} name={name} scope={scope}")
    if json:
        echo_json({"client_id": client.client_id, "client_secret": secret, "name": name,
                   "scope": scope, "role": role})
    else:
        typer.echo(f"client_id:     {client.client_id}")
        if secret:
            typer.echo(f"client_secret: {secret}   (shown once)")


@app.command("list")
def list_clients(ctx: typer.Context) -> None:
    """List clients with their scopes."""
    with reported(), security_db(ctx) as db:
        found = accounts(db).clients()
    for c in found:
        typer.echo(f"{c.client_id}\t{c.name}\t{c.role}\t{c.scope}")
