"""``medarchive clients``: OAuth 2.0 clients: system clients (SMART Backend Services) and
user-facing apps (SMART App Launch).

``clients add NAME --scope "system/*.rs" --json`` prints ``client_id`` and ``client_secret``
(shown once; only its argon2id hash is stored). ``--jwks FILE`` registers public keys for
``private_key_jwt`` instead of, or besides, a secret. ``--redirect-uri URI`` (repeatable) makes
the client an app that may use the authorization code grant; ``--public`` registers an app
without secret (PKCE only); ``--launch-uri URI`` lists it under the chart's "Launch app".
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
        redirect_uri: Annotated[list[str] | None, typer.Option(
            "--redirect-uri", help="An app's redirect URI, matched exactly (repeatable).")
                                ] = None,
        public: Annotated[bool, typer.Option(
            "--public", help="A public app: no secret, PKCE only (needs --redirect-uri).")
                          ] = False,
        launch_uri: Annotated[str | None, typer.Option(
            "--launch-uri", help="The app's EHR launch URL (web UI: Launch app).")] = None,
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
    uris = list(redirect_uri or [])
    check_app(uris, public, launch_uri, keys)
    if no_secret and keys is None and not public:
        fail("a client without a secret needs --jwks (or is a --public app)")
    with reported(), security_db(ctx) as db:
        client, secret = accounts(db).add_client(name, scope, role=role, jwks=keys,
                                                 with_secret=not (no_secret or public))
        detail = f"clients add {client.client_id} name={name} scope={scope}"
        if uris:
            from medarchive.security.apps import Apps
            Apps(db).register(client.client_id, uris, public=public,  # type: ignore[arg-type]
                              launch_uri=launch_uri)
            detail += f" redirect_uris={' '.join(uris)} public={public}"
        audit_admin(db, detail)
    if json:
        shown = {"client_id": client.client_id, "client_secret": secret, "name": name,
                 "scope": scope, "role": role}
        if uris:
            shown.update(redirect_uris=uris, public=public, launch_uri=launch_uri)
        echo_json(shown)
    else:
        typer.echo(f"client_id:     {client.client_id}")
        if secret:
            typer.echo(f"client_secret: {secret}   (shown once)")


def check_app(uris: list[str], public: bool, launch_uri: str | None, keys: str | None) -> None:
    """Exit with a message unless the app options fit together and every URI may be used."""
    from medarchive.security.apps import check_redirect_uri
    if (public or launch_uri) and not uris:
        fail("--public and --launch-uri are for apps: give --redirect-uri as well")
    if public and keys is not None:
        fail("a public app has no keys: leave out --jwks or --public")
    for uri in [*uris, *([launch_uri] if launch_uri else [])]:
        try:
            check_redirect_uri(uri)
        except ValueError as exc:
            fail(str(exc))


@app.command("list")
def list_clients(ctx: typer.Context) -> None:
    """List clients with their scopes."""
    with reported(), security_db(ctx) as db:
        found = accounts(db).clients()
    for c in found:
        typer.echo(f"{c.client_id}\t{c.name}\t{c.role}\t{c.scope}")
