"""``medarchive keys``: the encryption-at-rest keys of the configured database.

``status`` shows the data keys and the key-encryption key; ``shred PATIENT`` erases a patient
for good by destroying their data keys (audited); ``rotate`` moves every data key to a new KEK
version without stopping the server; ``reencrypt [PATIENT]`` gives new data keys and re-seals
the bodies (for a key that may be compromised; it also seals bodies stored before encryption
was on). See docs/encryption.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from medarchive.cli.context import console, echo_json, fail, reported, state

app = typer.Typer(help="Encryption-at-rest keys (see docs/encryption.md).", no_args_is_help=True)


@contextmanager
def encrypted_store(ctx: typer.Context) -> Iterator[Any]:
    """The configured SQL store with its encryption; closed afterwards."""
    from medarchive.app import build_encryption
    from medarchive.fhir.search.index import build_indexer
    from medarchive.fhir.spec import load_spec
    from medarchive.store import open_store

    settings = state(ctx).settings()
    if settings.database_url.startswith("memory:"):
        fail("keys need a SQL database (sqlite:/// or postgresql://), not memory://")
    if settings.encryption != "on":
        fail("encryption is off: set encryption = on (MEDARCHIVE_ENCRYPTION=on) first")
    spec = load_spec()
    store = open_store(settings.database_url, build_indexer(spec),
                       encryption=build_encryption(settings, spec))
    try:
        yield store
    finally:
        store.close()


def _audit(store: Any, detail: str) -> None:
    from medarchive.cli.users import audit_admin
    audit_admin(store.db, detail)


@app.command("status")
def status_command(ctx: typer.Context, json: Annotated[bool, typer.Option(
        "--json", help="Print the status as JSON.")] = False) -> None:
    """Data keys by state and KEK version, and how many versions are sealed."""
    from dataclasses import asdict

    from medarchive.store.sql.keyadmin import status
    with reported(), encrypted_store(ctx) as store:
        report = status(store.keyring)
    if json:
        echo_json(asdict(report))
        return
    typer.echo(f"key manager: {report.kek_manager}, current KEK {report.kek_current} "
               f"(versions kept: {', '.join(report.kek_versions)})")
    for name, count in report.keys.items():
        typer.echo(f"data keys {name}: {count}")
    for kek, count in report.by_kek.items():
        typer.echo(f"wrapped under {kek}: {count}")
    typer.echo(f"versions sealed: {report.sealed_versions}, plaintext: "
               f"{report.plaintext_versions}")


@app.command("shred")
def shred_command(ctx: typer.Context, patient: str, yes: Annotated[bool, typer.Option(
        "--yes", help="Do not ask for confirmation.")] = False) -> None:
    """Erase PATIENT (an id or Patient/id) for good: destroy their data keys, so every copy of
    their records (history, database files, dumps, backups) becomes unreadable. Audited."""
    from medarchive.store.sql.keyadmin import patient_owner, shred
    with reported():
        owner = patient_owner(patient)
    if not yes and not typer.confirm(f"erase {owner} permanently? This cannot be undone"):
        fail("nothing shredded")
    with reported(), encrypted_store(ctx) as store:
        report = shred(store.keyring, owner)
        _audit(store, f"keys shred {owner}: {report.keys} data keys destroyed, "
                      f"{report.versions} versions of {report.resources} resources erased, "
                      f"{report.readings} raw device readings deleted")
    console.print(f"shredded {owner}: {report.keys} data key(s) destroyed; {report.versions} "
                  f"stored versions of {report.resources} resources can no longer be read; "
                  f"{report.readings} raw device readings deleted. "
                  "Run `medarchive keys rotate` to make older copies of the wrapped keys "
                  "unreadable too.")


@app.command("rotate")
def rotate_command(ctx: typer.Context) -> None:
    """New key-encryption-key version; rewrap every data key under it (online)."""
    from medarchive.store.sql.keyadmin import rotate
    with reported(), encrypted_store(ctx) as store:
        report = rotate(store.keyring)
        _audit(store, f"keys rotate: KEK {report.kek}, {report.rewrapped} data keys rewrapped, "
                      f"retired {', '.join(report.retired) or 'none'}")
    console.print(f"current KEK {report.kek}: {report.rewrapped} data keys rewrapped; "
                  f"retired KEK versions: {', '.join(report.retired) or 'none'}")


@app.command("reencrypt")
def reencrypt_command(
    ctx: typer.Context,
    patient: Annotated[str | None, typer.Argument(
        help="Only this patient's key (an id or Patient/id); default: every data key.")] = None,
    destroy_old: Annotated[bool, typer.Option(
        "--destroy-old", help="Delete the replaced data keys afterwards (older backups "
                              "sealed with them become unreadable).")] = False,
) -> None:
    """New data keys and every body re-sealed under them (online; resumable)."""
    from medarchive.store.sql.keyadmin import reencrypt
    with reported(), encrypted_store(ctx) as store:
        report = reencrypt(store.keyring, store.owner_of, patient, destroy_old=destroy_old)
        _audit(store, f"keys reencrypt {patient or 'all'}: {report.retired_keys} keys "
                      f"replaced, {report.resealed} versions re-sealed, "
                      f"{report.sealed_plaintext} plaintext versions sealed")
    console.print(f"replaced {report.retired_keys} data keys; re-sealed {report.resealed} "
                  f"versions, sealed {report.sealed_plaintext} plaintext versions"
                  + (f"; destroyed {report.destroyed_keys} old keys" if destroy_old else ""))
