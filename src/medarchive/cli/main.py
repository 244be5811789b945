"""Entry point of the ``medarchive`` command: global options and the command groups.

Every command turns a ``FhirError`` (or a bad setting) into a message on stderr and a non-zero
exit status; nothing prints a stack trace for bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medarchive.cli import (
    audit,
    backup,
    certs,
    clients,
    db,
    demo,
    devices,
    drill,
    export,
    hl7,
    imports,
    keys,
    restore,
    roles,
    serve,
    users,
    validate,
    views,
    warehouse,
)
from medarchive.cli.context import CliState

app = typer.Typer(help="MedArchive: a hospital medical-records platform on FHIR R4.",
                  no_args_is_help=True, pretty_exceptions_enable=False,
                  add_completion=False)
app.add_typer(db.app, name="db")
app.add_typer(users.app, name="users")
app.add_typer(clients.app, name="clients")
app.add_typer(audit.app, name="audit")
app.add_typer(hl7.app, name="hl7")
app.add_typer(devices.app, name="devices")
app.add_typer(views.app, name="views")
app.add_typer(warehouse.app, name="warehouse")
app.command("serve")(serve.serve)
app.command("demo")(demo.demo)
app.command("import")(imports.import_command)
app.command("export")(export.export)
app.command("validate")(validate.validate)
app.add_typer(backup.app, name="backup")
app.add_typer(keys.app, name="keys")
app.add_typer(certs.app, name="certs")
app.add_typer(roles.app, name="roles")
app.command("restore")(restore.restore_command)
app.command("drill")(drill.drill)


@app.callback()
def options(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(
        help="TOML settings file (keys are setting names; see docs/settings.md).")] = None,
    database_url: Annotated[str | None, typer.Option(
        help="Database URL; overrides MEDARCHIVE_DATABASE_URL.")] = None,
) -> None:
    """Options shared by every command."""
    ctx.obj = CliState(config=config, overrides={"database_url": database_url})
    roles.install_roles(ctx.obj)  # a bad role file stops every command (docs/security.md)


def main() -> None:
    app()
