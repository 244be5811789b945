"""``medarchive roles``: the effective roles (the built-in ones, or the role file's).

``list`` names them; ``show [ROLE]`` prints what each grants, as text, JSON or a role file
(``--format toml``: the starting point of a hospital's own file). The table is the one the
command started with (``install_roles``, run before every command: a role file that does not
pass its checks stops every command, as it stops the server). Roles are never edited here or
over HTTP: edit the file, restart; the server logs the file's sha256 at start-up.
"""

from __future__ import annotations

from typing import Annotated

import typer

from medarchive.cli.context import CliState, echo_json, fail

app = typer.Typer(help="Roles and their permissions (see docs/security.md \"Roles as data\").",
                  no_args_is_help=True)
FORMATS = ("text", "json", "toml")


def install_roles(cli: CliState) -> None:
    """Load the configured role file (none: the built-in roles) and make it this process's
    table; exit 1 naming the file's problems. Bad settings are left to the command, which
    reports them."""
    from medarchive.security.roles import RoleFileError, builtin, install, load_role_file
    from medarchive.settings import load_settings

    try:
        role_file = load_settings(cli.overrides, config_file=cli.config).role_file
    except (ValueError, OSError):
        role_file = ""
    if not role_file:
        install(builtin())
        return
    from medarchive.fhir.spec import load_spec
    try:
        install(load_role_file(role_file, load_spec().resource_types))
    except RoleFileError as exc:
        fail(str(exc))


@app.command("list")
def list_roles() -> None:
    """One line per role: name, origin, whether it needs a care relationship, description."""
    from medarchive.security.roles import installed

    table = installed()
    typer.echo(f"# {table.source()}")
    for role in table.roles.values():
        needs = "relationship" if role.relationship else "-"
        typer.echo(f"{role.name}\t{role.origin}\t{needs}\t{role.description}")


@app.command("show")
def show(role: Annotated[str | None, typer.Argument(help="One role (default: all).")] = None,
         format: Annotated[str, typer.Option(
             "--format", help="text, json, or toml (a role file).")] = "text") -> None:
    """What each role grants: letters (cruds) on resource types, relationship, description."""
    from medarchive.security.authz import ALL
    from medarchive.security.roles import LETTERS, describe, installed, to_toml

    table = installed()
    if format not in FORMATS:
        fail(f"--format must be one of {', '.join(FORMATS)}, not {format!r}")
    if role is not None and role not in table.roles:
        fail(f"unknown role {role!r}; roles: {', '.join(table.names())}")
    names = list(table.roles) if role is None else [role]
    if format == "toml":
        typer.echo(to_toml(table, None if role is None else names), nl=False)
    elif format == "json":
        echo_json({"source": table.path, "sha256": table.sha256, "roles": [
            {"name": n, "origin": table.roles[n].origin,
             "relationship": table.roles[n].relationship,
             "description": table.roles[n].description,
             "grants": [{"letters": "".join(x for x in LETTERS if x in g.letters),
                         "types": ALL if g.types == ALL else sorted(g.types)}
                        for g in table.roles[n].grants]} for n in names]})
    else:
        typer.echo(f"# {table.source()}")
        for name in names:
            typer.echo("\n".join(describe(table.roles[name])))
