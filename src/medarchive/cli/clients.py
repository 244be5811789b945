"""``medarchive clients``: OAuth 2.0 clients: system clients (SMART Backend Services) and
user-facing apps (SMART App Launch).

``clients add NAME --scope "system/*.rs" --json`` prints ``client_id`` and ``client_secret``
(shown once; only its argon2id hash is stored). ``--jwks FILE`` registers public keys for
``private_key_jwt`` instead of, or besides, a secret. ``--redirect-uri URI`` (repeatable) makes
the client an app that may use the authorization code grant; ``--public`` registers an app
without secret (PKCE only); ``--launch-uri URI`` lists it under the chart's "Launch app".
``clients disable|enable|remove NAME_OR_ID`` and ``clients rotate-secret NAME_OR_ID`` (prints
the new secret once) revoke the client's outstanding tokens. Each change and its AuditEvent are
one transaction; refused ones are audited as failures (``users.admin_change``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer

from medarchive.cli.context import echo_json, reported
from medarchive.cli.users import accounts, admin_change, security_db

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
    uris = list(redirect_uri or [])
    detail = f"clients add name={name} scope={scope}"
    if uris:
        detail += f" redirect_uris={' '.join(uris)} public={public}"
    with reported(), security_db(ctx) as db, admin_change(db, "admin", detail) as joined:
        keys = jwks.read_text() if jwks is not None else None
        check_client(scope, keys, uris, public, launch_uri, no_secret)
        client, secret = accounts(joined).add_client(name, scope, role=role, jwks=keys,
                                                     with_secret=not (no_secret or public))
        joined.detail += f" client_id={client.client_id}"
        if uris:
            from medarchive.security.apps import Apps
            Apps(joined).register(client.client_id, uris,  # type: ignore[arg-type]
                                  public=public, launch_uri=launch_uri)
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


def check_client(scope: str, keys: str | None, uris: list[str], public: bool,
                 launch_uri: str | None, no_secret: bool) -> None:
    """ValueError unless the options of ``clients add`` fit together and every URI may be
    used."""
    from medarchive.security.apps import check_redirect_uri
    from medarchive.security.scopes import parse_scopes
    if not parse_scopes(scope)[0]:
        raise ValueError(f"no resource scope in {scope!r} (e.g. system/*.rs)")
    if keys is not None:
        try:
            valid = "keys" in orjson.loads(keys)
        except orjson.JSONDecodeError:
            valid = False
        if not valid:
            raise ValueError("--jwks is not a JSON Web Key Set")
    if (public or launch_uri) and not uris:
        raise ValueError("--public and --launch-uri are for apps: give --redirect-uri as well")
    if public and keys is not None:
        raise ValueError("a public app has no keys: leave out --jwks or --public")
    if no_secret and keys is None and not public:
        raise ValueError("a client without a secret needs --jwks (or is a --public app)")
    for uri in [*uris, *([launch_uri] if launch_uri else [])]:
        check_redirect_uri(uri)


@app.command("list")
def list_clients(ctx: typer.Context) -> None:
    """List clients with their scopes."""
    with reported(), security_db(ctx) as db:
        found = accounts(db).clients()
    for c in found:
        typer.echo(f"{c.client_id}\t{c.name}\t{c.role}\t{c.scope}")


def _change(ctx: typer.Context, action: str, name_or_id: str) -> str:
    """Disable, enable or remove a client, with its AuditEvent; its client id."""
    with reported(), security_db(ctx) as db, \
            admin_change(db, "admin", f"clients {action} {name_or_id}") as joined:
        found = accounts(joined)
        client_id = found.find_client(name_or_id).client_id
        joined.detail += f" client_id={client_id}"
        if action == "remove":
            found.remove_client(client_id)
        else:
            found.set_client_disabled(client_id, action == "disable")
    return client_id


@app.command("disable")
def disable(ctx: typer.Context, name_or_id: str) -> None:
    """Refuse the client's token requests and revoke its outstanding tokens."""
    typer.echo(f"client {_change(ctx, 'disable', name_or_id)} disabled")


@app.command("enable")
def enable(ctx: typer.Context, name_or_id: str) -> None:
    """Let a disabled client get tokens again (revoked ones stay revoked)."""
    typer.echo(f"client {_change(ctx, 'enable', name_or_id)} enabled")


@app.command("remove")
def remove(ctx: typer.Context, name_or_id: str) -> None:
    """Remove a client (and its app registration); its outstanding tokens are revoked."""
    typer.echo(f"client {_change(ctx, 'remove', name_or_id)} removed")


@app.command("rotate-secret")
def rotate_secret(ctx: typer.Context, name_or_id: str,
                  json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")
                                  ] = False) -> None:
    """Give a client a new secret (printed once); the old one and the client's outstanding
    tokens stop working."""
    with reported(), security_db(ctx) as db, \
            admin_change(db, "admin", f"clients rotate-secret {name_or_id}") as joined:
        found = accounts(joined)
        client_id = found.find_client(name_or_id).client_id
        joined.detail += f" client_id={client_id}"
        secret = found.rotate_secret(client_id)
    if json:
        echo_json({"client_id": client_id, "client_secret": secret})
    else:
        typer.echo(f"client_id:     {client_id}")
        typer.echo(f"client_secret: {secret}   (shown once)")
