"""Role permissions as data: the role file, its strict validation and its export.

The built-in table (``authz.ROLES`` and ``authz.RELATIONSHIP_ROLES``) is the default. A role
file (setting ``role_file``, TOML; docs/security.md "Roles as data") defines roles: for each its
grants (permission letters from ``cruds`` on resource types or ``*``, as ``authz.Grant``),
whether it needs a care relationship with the patient (ABAC) and a description. A file role
with a built-in name replaces that role; other names are added; ``extends`` starts a role from
another one's grants. ``builtin_roles = false`` makes the file the whole table (the export,
``medarchive roles show --format toml``, says so, so a hospital starts from the built-ins).

The file is checked whole before anything uses it: an unknown key, resource type or letter, a
repeated type, letter or grant, a bad name or an ``extends`` cycle is an error naming the file,
the role and the key, and no table is returned (never a half-applied policy). The role
``system`` is the in-process actor's and cannot be defined.

One process runs with one table: the composition root (``app``) and the CLI load it at
start-up and ``install`` it, so account checks (``users add --role``) see the same roles as the
server's ``Policy``; changing the file changes permissions at the next start.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medarchive.security.authz import ALL, RELATIONSHIP_ROLES, RESTRICTED, ROLES, Grant

SYSTEM_ROLE = "system"
LETTERS = "cruds"
NAME = re.compile(r"[a-z][a-z0-9_]{0,39}\Z")
FILE_KEYS = frozenset({"builtin_roles", "roles"})
ROLE_KEYS = frozenset({"description", "relationship", "extends", "grants"})
GRANT_KEYS = frozenset({"types", "letters"})
BUILTIN_DESCRIPTIONS = {
    "administrator": "Runs the system: every interaction on every type (not the audit trail).",
    "physician": "Orders and documents care: cruds on clinical and demographic types, read "
                 "and search on the rest.",
    "nurse": "Documents care: create, read, update, search on clinical types, read and "
             "search on the rest.",
    "pharmacist": "Manages medicines: cruds on medication types, read and search on the rest.",
    "records_clerk": "Registration and administration: cruds on demographic and "
                     "administrative types, read and search on the rest.",
    "researcher": "Reads and searches every type (purpose of use HRESCH only).",
    "auditor": "Reads and searches the audit trail (AuditEvent) only.",
    "patient": "Reads and searches their own compartment only (patient/ scopes).",
    "integration": "Interface systems (clients): every interaction on every type.",
    "device": "Bedside and wearable devices: create, read, update Observation, Device, "
              "DeviceMetric.",
}


class RoleFileError(ValueError):
    """A role file that cannot be used; the message names the file, role and key."""


@dataclass(frozen=True, slots=True)
class Role:
    """One role: what it grants, whether it needs a care relationship, what it is for;
    ``origin`` is built-in, file, or replaced (a file role with a built-in name)."""

    name: str
    grants: tuple[Grant, ...]
    relationship: bool
    description: str
    origin: str = "built-in"


@dataclass(frozen=True)
class RoleTable:
    """The effective roles (``system`` aside) and the file they came from, if any."""

    roles: Mapping[str, Role]
    path: str | None = None
    sha256: str | None = None
    _grants: dict[str, tuple[Grant, ...]] = field(default_factory=dict, compare=False,
                                                  repr=False)

    def __post_init__(self) -> None:
        self._grants.update({name: role.grants for name, role in self.roles.items()})
        self._grants[SYSTEM_ROLE] = ROLES[SYSTEM_ROLE]

    @property
    def grants(self) -> Mapping[str, tuple[Grant, ...]]:
        """Role -> grants, ``system`` included: what ``authz.Policy(roles=...)`` takes."""
        return self._grants

    @property
    def relationship(self) -> frozenset[str]:
        """The roles that need a care relationship with the patient (ABAC)."""
        return frozenset(name for name, role in self.roles.items() if role.relationship)

    def names(self) -> tuple[str, ...]:
        """The roles an account may have, in table order."""
        return tuple(self.roles)

    def source(self) -> str:
        """Where the table came from, for logs and ``roles show``."""
        if self.path is None:
            return "built-in roles (no role_file)"
        return f"role file {self.path} (sha256 {self.sha256})"


def builtin() -> RoleTable:
    """The built-in table: ``authz.ROLES`` with ``authz.RELATIONSHIP_ROLES``."""
    return RoleTable({name: Role(name, grants, name in RELATIONSHIP_ROLES,
                                 BUILTIN_DESCRIPTIONS.get(name, ""))
                      for name, grants in ROLES.items() if name != SYSTEM_ROLE})


# -- loading and validation -----------------------------------------------------------------

def load_roles(role_file: str, resource_types: Collection[str]) -> RoleTable:
    """The built-in table when ``role_file`` is empty, else the checked file's table."""
    return load_role_file(role_file, resource_types) if role_file else builtin()


def load_role_file(path: str | Path, resource_types: Collection[str]) -> RoleTable:
    """The roles of the TOML file at ``path``; RoleFileError listing every problem."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise RoleFileError(f"role file {path}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RoleFileError(f"role file {path}: not valid TOML: {exc}") from None
    problems: list[str] = []
    roles = _table(data, set(resource_types), problems)
    if problems:
        raise RoleFileError(f"role file {path}: " + "; ".join(problems))
    return RoleTable(roles, str(path), hashlib.sha256(raw).hexdigest())


def _table(data: dict[str, Any], known: set[str], problems: list[str]) -> dict[str, Role]:
    for key in sorted(set(data) - FILE_KEYS):
        problems.append(f"unknown key {key!r} (keys: builtin_roles, roles)")
    keep = data.get("builtin_roles", True)
    if not isinstance(keep, bool):
        problems.append("builtin_roles: expected true or false")
    defined = data.get("roles", {})
    if not isinstance(defined, dict) or not defined:
        problems.append("roles: expected at least one [roles.NAME] table")
        return {}
    base = dict(builtin().roles) if keep is not False else {}
    parsed: dict[str, dict[str, Any]] = {}
    for name, body in defined.items():
        where = f"role {name}"
        if not NAME.match(name):
            problems.append(f"{where}: a role name is a-z, 0-9 and _, starting with a letter")
        elif name == SYSTEM_ROLE:
            problems.append(f"{where}: the system role is the server's own and cannot be "
                            "defined")
        elif not isinstance(body, dict):
            problems.append(f"{where}: expected a table")
        else:
            parsed[name] = _role(where, body, known, problems)
    resolved: dict[str, Role | None] = {}
    for name in parsed:
        _resolve(name, parsed, base, resolved, (), problems)
    return {**base, **{name: Role(name, role.grants, role.relationship, role.description,
                                  "replaced" if name in base else "file")
                       for name in parsed if (role := resolved[name]) is not None}}


def _role(where: str, body: dict[str, Any], known: set[str],
          problems: list[str]) -> dict[str, Any]:
    for key in sorted(set(body) - ROLE_KEYS):
        problems.append(f"{where}: unknown key {key!r} (keys: {', '.join(sorted(ROLE_KEYS))})")
    description = body.get("description")
    if not isinstance(description, str) or not description.strip():
        problems.append(f"{where}: description: expected a non-empty string")
    extends = body.get("extends")
    if extends is not None and not isinstance(extends, str):
        problems.append(f"{where}: extends: expected a role name")
    relationship = body.get("relationship")
    if relationship is None and extends is None:  # said outright: replacing nurse must not
        problems.append(f"{where}: relationship: missing (true or false)")  # drop it unseen
    elif relationship is not None and not isinstance(relationship, bool):
        problems.append(f"{where}: relationship: expected true or false")
    grants = body.get("grants")
    if grants is None and extends is None:
        problems.append(f"{where}: grants: missing (or extends another role)")
    checked: list[Grant] = []
    if grants is not None:
        if not isinstance(grants, list) or (not grants and extends is None):
            problems.append(f"{where}: grants: expected a list of {{types, letters}} tables")
        else:
            for number, grant in enumerate(grants, 1):
                found = _grant(f"{where}: grants[{number}]", grant, known, problems)
                if found is not None and found in checked:
                    problems.append(f"{where}: grants[{number}]: repeats grants"
                                    f"[{checked.index(found) + 1}]")
                elif found is not None:
                    checked.append(found)
    return {"description": description, "relationship": relationship,
            "extends": extends, "grants": tuple(checked)}


def _grant(where: str, grant: Any, known: set[str], problems: list[str]) -> Grant | None:
    if not isinstance(grant, dict):
        problems.append(f"{where}: expected a table with types and letters")
        return None
    before = len(problems)
    for key in sorted(set(grant) - GRANT_KEYS):
        problems.append(f"{where}: unknown key {key!r} (keys: letters, types)")
    letters = grant.get("letters")
    if not isinstance(letters, str) or not letters:
        problems.append(f"{where}: letters: expected a string of permission letters (cruds)")
    else:
        for letter in sorted(set(letters) - set(LETTERS)):
            problems.append(f"{where}: letters: {letter!r} is not a permission letter "
                            f"(c, r, u, d, s)")
        for letter in sorted({x for x in letters if letters.count(x) > 1}):
            problems.append(f"{where}: letters: {letter!r} appears twice")
    types = grant.get("types")
    if types == ALL:
        pass
    elif not isinstance(types, list) or not types \
            or not all(isinstance(t, str) for t in types):
        problems.append(f"{where}: types: expected \"*\" or a list of resource type names")
    else:
        for name in sorted(set(types) - known):
            hint = " (\"*\" stands alone, not in a list)" if name == ALL else ""
            problems.append(f"{where}: types: {name!r} is not an R4 resource type{hint}")
        for name in sorted({t for t in types if types.count(t) > 1}):
            problems.append(f"{where}: types: {name!r} appears twice")
    if len(problems) > before or not isinstance(letters, str):
        return None
    return Grant(ALL if types == ALL else frozenset(types or ()), frozenset(letters))


def _resolve(name: str, parsed: dict[str, dict[str, Any]], base: dict[str, Role],
             resolved: dict[str, Role | None], chain: tuple[str, ...],
             problems: list[str]) -> Role | None:
    """The file's role ``name`` with its ``extends`` applied (the file's roles before the
    built-in ones); None, noted in ``resolved``, when it cannot be."""
    if name in resolved:
        return resolved[name]
    if name not in parsed:
        return base.get(name)
    if name in chain:
        problems.append(f"role {chain[0]}: extends: a cycle ({' -> '.join((*chain, name))})")
        return None
    body = parsed[name]
    grants: tuple[Grant, ...] = body["grants"]
    relationship = body["relationship"]
    parent_name = body["extends"]
    role: Role | None = None
    if not isinstance(parent_name, str):
        role = Role(name, grants, bool(relationship), str(body["description"] or ""))
    elif parent_name == name:
        problems.append(f"role {name}: extends: a role cannot extend itself")
    elif parent_name not in parsed and parent_name not in base:
        problems.append(f"role {name}: extends: no role {parent_name!r}")
    else:
        parent = _resolve(parent_name, parsed, base, resolved, (*chain, name), problems)
        if parent is not None:
            role = Role(name, parent.grants + tuple(g for g in grants if g not in parent.grants),
                        parent.relationship if relationship is None else bool(relationship),
                        str(body["description"] or ""))
    resolved[name] = role
    return role


# -- export ---------------------------------------------------------------------------------

def to_toml(table: RoleTable, names: Iterable[str] | None = None) -> str:
    """``table`` (or the roles ``names`` of it) as a role file: loaded again, it gives the
    same roles. The whole table is written with ``builtin_roles = false``."""
    chosen = list(table.roles) if names is None else list(names)
    whole = names is None
    lines = ["# MedArchive role file (docs/security.md \"Roles as data\")",
             f"# exported from: {table.source()}"]
    if whole:
        lines += ["# builtin_roles = false: this file is the whole table (remove a role here",
                  "# and nobody has it).", "builtin_roles = false"]
    for name in chosen:
        role = table.roles[name]
        lines += ["", f"[roles.{name}]", f"description = {_string(role.description)}",
                  f"relationship = {'true' if role.relationship else 'false'}"]
        for grant in role.grants:
            letters = "".join(x for x in LETTERS if x in grant.letters)
            lines += ["", f"[[roles.{name}.grants]]", f"letters = \"{letters}\""]
            if grant.types == ALL:
                lines.append('types = "*"')
            else:
                lines += ["types = [", *_packed([f'"{t}",' for t in sorted(grant.types)]), "]"]
    return "\n".join(lines) + "\n"


def _packed(words: list[str], width: int = 92) -> list[str]:
    """``words`` on indented lines of at most about ``width`` characters."""
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append("    " + word)
    return lines


def _string(text: str) -> str:
    """A TOML basic string."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c >= " " else f"\\u{ord(c):04x}" for c in escaped) + '"'


def describe(role: Role) -> list[str]:
    """A role as lines of text: origin, relationship, grants."""
    needs = ", needs a care relationship" if role.relationship else ""
    lines = [f"{role.name}  ({role.origin}{needs})", f"  {role.description}"]
    for grant in role.grants:
        letters = "".join(x for x in LETTERS if x in grant.letters)
        what = f"every type but {', '.join(sorted(RESTRICTED))}" if grant.types == ALL \
            else ", ".join(sorted(grant.types))
        lines.append(f"  {letters} on {what}")
    return lines


# -- the process's table --------------------------------------------------------------------

_INSTALLED: list[RoleTable] = []


def install(table: RoleTable) -> None:
    """Make ``table`` the roles this process runs with (start-up, once per server or CLI)."""
    _INSTALLED[:] = [table]


def installed() -> RoleTable:
    """The roles this process runs with: the installed table, else the built-in one."""
    return _INSTALLED[0] if _INSTALLED else builtin()
