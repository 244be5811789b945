"""Roles as data (security.roles): the role file's meaning, every validation error, and the
export of the built-in table round-tripping to the same decisions as ``authz.ROLES``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medarchive.security.accounts import check_role
from medarchive.security.actor import Actor
from medarchive.security.authz import RELATIONSHIP_ROLES, ROLES, Policy
from medarchive.security.roles import (
    RoleFileError,
    builtin,
    install,
    installed,
    load_role_file,
    load_roles,
    to_toml,
)
from medarchive.security.scopes import parse_scopes

WARD_CLERK = """
[roles.ward_clerk]
description = "Ward clerk: admissions desk"
relationship = false

[[roles.ward_clerk.grants]]
types = ["Patient", "Encounter"]
letters = "rs"
"""


@pytest.fixture(scope="module")
def types(spec: Any) -> frozenset[str]:
    return frozenset(spec.resource_types)


@pytest.fixture
def restore_installed() -> Any:
    yield
    install(builtin())


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "roles.toml"
    path.write_text(text)
    return path


def full(role: str) -> Actor:
    return Actor("user", f"{role}-1", role, parse_scopes("user/*.cruds")[0])


def test_builtin_table_is_the_constant() -> None:
    table = builtin()
    assert set(table.grants) == set(ROLES)
    assert all(table.grants[name] == ROLES[name] for name in ROLES)
    assert table.relationship == RELATIONSHIP_ROLES
    assert "system" not in table.names() and all(r.description for r in table.roles.values())
    assert load_roles("", ()) == table


def test_custom_role_adds_to_the_builtin_ones(tmp_path: Path, types: frozenset[str]) -> None:
    table = load_role_file(write(tmp_path, WARD_CLERK), types)
    assert table.names()[-1] == "ward_clerk" and set(ROLES) - {"system"} < set(table.names())
    clerk = table.roles["ward_clerk"]
    assert clerk.origin == "file" and not clerk.relationship
    policy = Policy(roles=table.grants)
    actor = full("ward_clerk")
    allowed = {(letter, t) for letter in "cruds" for t in types
               if policy.allowed(actor, letter, t)}
    assert allowed == {(x, t) for x in "rs" for t in ("Patient", "Encounter")}
    assert table.path == str(tmp_path / "roles.toml") and len(table.sha256 or "") == 64


def test_file_role_replaces_a_builtin_one(tmp_path: Path, types: frozenset[str]) -> None:
    table = load_role_file(write(tmp_path, """
[roles.nurse]
description = "Nurses read only here"
relationship = false
grants = [{ types = "*", letters = "rs" }]
"""), types)
    nurse = table.roles["nurse"]
    assert nurse.origin == "replaced" and "nurse" not in table.relationship
    policy = Policy(roles=table.grants)
    assert not policy.allowed(full("nurse"), "c", "Observation")
    assert policy.allowed(full("nurse"), "r", "Observation")
    assert Policy().allowed(full("nurse"), "c", "Observation")  # the constant still does
    assert table.roles["physician"] == builtin().roles["physician"]


def test_extends_and_builtin_roles_false(tmp_path: Path, types: frozenset[str]) -> None:
    table = load_role_file(write(tmp_path, """
builtin_roles = false
[roles.charge_nurse]
description = "A nurse who may also delete clinical records"
extends = "ward_nurse"
grants = [{ types = ["Observation"], letters = "d" }]

[roles.ward_nurse]
description = "A ward nurse"
relationship = true
grants = [{ types = ["Observation", "Patient"], letters = "crus" }]
"""), types)
    assert table.names() == ("charge_nurse", "ward_nurse")
    assert table.relationship == {"charge_nurse", "ward_nurse"}  # inherited
    policy = Policy(roles=table.grants)
    assert policy.allowed(full("charge_nurse"), "d", "Observation")
    assert policy.allowed(full("charge_nurse"), "c", "Patient")
    assert not policy.allowed(full("ward_nurse"), "d", "Observation")
    assert not policy.allowed(full("nurse"), "r", "Patient")  # no built-in roles at all
    assert policy.allowed(Actor("system", "x", "system", parse_scopes("system/*.cruds")[0]),
                          "d", "Patient")


def test_extends_a_builtin_role(tmp_path: Path, types: frozenset[str]) -> None:
    table = load_role_file(write(tmp_path, """
[roles.senior_nurse]
description = "nurse, and may delete Observations"
extends = "nurse"
grants = [{ types = ["Observation"], letters = "d" }]
"""), types)
    assert table.roles["senior_nurse"].relationship
    assert table.roles["senior_nurse"].grants[:2] == ROLES["nurse"]


BAD = [  # (file text, words the message must contain)
    ("[roles.x\n", ["not valid TOML"]),
    ("[roles.nurse]\ndescription = \"a\"\ndescription = \"b\"\n", ["not valid TOML"]),
    ("colour = 1\n" + WARD_CLERK, ["unknown key 'colour'"]),
    ("builtin_roles = \"no\"\n" + WARD_CLERK, ["builtin_roles"]),
    ("builtin_roles = false\n", ["roles: expected at least one"]),
    (WARD_CLERK + "colour = 1\n", ["role ward_clerk", "unknown key 'colour'"]),
    (WARD_CLERK.replace('letters = "rs"', 'letters = "rx"'),
     ["role ward_clerk", "grants[1]", "letters", "'x' is not a permission letter"]),
    (WARD_CLERK.replace('letters = "rs"', 'letters = "rr"'),
     ["grants[1]", "letters", "'r' appears twice"]),
    (WARD_CLERK.replace('letters = "rs"', 'letters = ""'), ["grants[1]", "letters"]),
    (WARD_CLERK.replace('"Encounter"', '"Encounterr"'),
     ["role ward_clerk", "grants[1]", "types", "'Encounterr' is not an R4 resource type"]),
    (WARD_CLERK.replace('"Encounter"', '"Patient"'), ["types", "'Patient' appears twice"]),
    (WARD_CLERK.replace('"Encounter"', '"*"'), ["types", "'*'", "stands alone"]),
    (WARD_CLERK.replace('["Patient", "Encounter"]', "[]"), ["types: expected"]),
    (WARD_CLERK.replace('["Patient", "Encounter"]', '"Patient"'), ["types: expected"]),
    (WARD_CLERK.replace('letters = "rs"', 'letters = "rs"\nverbs = "x"'),
     ["grants[1]", "unknown key 'verbs'"]),
    (WARD_CLERK + '[[roles.ward_clerk.grants]]\ntypes = ["Encounter", "Patient"]\n'
     'letters = "rs"\n', ["role ward_clerk", "grants[2]: repeats grants[1]"]),
    (WARD_CLERK.replace('description = "Ward clerk: admissions desk"\n', ""),
     ["role ward_clerk", "description"]),
    (WARD_CLERK.replace("relationship = false", ""), ["role ward_clerk", "relationship"]),
    (WARD_CLERK.replace("relationship = false", 'relationship = "no"'), ["relationship"]),
    ("[roles.ward_clerk]\ndescription = \"x\"\nrelationship = false\n",
     ["role ward_clerk", "grants: missing"]),
    ("[roles.ward_clerk]\ndescription = \"x\"\nrelationship = false\ngrants = []\n",
     ["role ward_clerk", "grants: expected"]),
    (WARD_CLERK.replace("ward_clerk", "Ward-Clerk"), ["role Ward-Clerk", "a role name"]),
    (WARD_CLERK.replace("ward_clerk", "system"), ["role system", "cannot be defined"]),
    ('[roles.a]\ndescription = "a"\nextends = "nobody"\n', ["role a", "extends",
                                                             "no role 'nobody'"]),
    ('[roles.a]\ndescription = "a"\nextends = "a"\n', ["role a", "extends", "itself"]),
    ('[roles.a]\ndescription = "a"\nextends = "b"\n[roles.b]\ndescription = "b"\n'
     'extends = "a"\n', ["role a", "extends", "a cycle (a -> b -> a)"]),
]


@pytest.mark.parametrize(("text", "words"), BAD)
def test_every_validation_error_names_file_role_and_key(
        tmp_path: Path, types: frozenset[str], text: str, words: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(RoleFileError) as caught:
        load_role_file(path, types)
    message = str(caught.value)
    assert message.startswith(f"role file {path}: ")
    for word in words:
        assert word in message, message


def test_all_problems_at_once_and_no_table(tmp_path: Path, types: frozenset[str]) -> None:
    text = WARD_CLERK.replace('letters = "rs"', 'letters = "q"').replace('"Encounter"',
                                                                         '"Nothing"')
    with pytest.raises(RoleFileError) as caught:
        load_role_file(write(tmp_path, text), types)
    assert "'q' is not a permission letter" in str(caught.value)
    assert "'Nothing' is not an R4 resource type" in str(caught.value)


def test_missing_file(tmp_path: Path, types: frozenset[str]) -> None:
    with pytest.raises(RoleFileError, match=r"role file .*nothing\.toml"):
        load_role_file(tmp_path / "nothing.toml", types)


def test_export_of_one_role_loads_back(tmp_path: Path, types: frozenset[str]) -> None:
    table = load_role_file(write(tmp_path, WARD_CLERK), types)
    again = load_role_file(write(tmp_path, to_toml(table, ["ward_clerk"])), types)
    assert again.roles["ward_clerk"] == table.roles["ward_clerk"]
    assert "builtin_roles" not in to_toml(table, ["ward_clerk"])


@pytest.fixture(scope="module")
def exported(spec: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("roles") / "builtin.toml"
    path.write_text(to_toml(builtin()))
    return load_role_file(path, spec.resource_types)


def test_export_round_trips_whole(exported: Any) -> None:
    assert {n: (r.grants, r.relationship, r.description) for n, r in exported.roles.items()} \
        == {n: (r.grants, r.relationship, r.description) for n, r in builtin().roles.items()}


@settings(max_examples=400, deadline=None)
@given(role=st.sampled_from(sorted(ROLES)), letter=st.sampled_from("cruds"),
       data=st.data())
def test_exported_table_decides_as_the_constant(exported: Any, spec: Any, role: str,
                                                letter: str, data: st.DataObject) -> None:
    rtype = data.draw(st.sampled_from([None, *sorted(spec.resource_types)]))
    actor = Actor("user", "u", role, parse_scopes("user/*.cruds")[0])
    assert Policy(roles=exported.grants).allowed(actor, letter, rtype) == \
        Policy().allowed(actor, letter, rtype)


def test_accounts_accept_the_installed_roles(tmp_path: Path, types: frozenset[str],
                                             restore_installed: None) -> None:
    with pytest.raises(ValueError, match="unknown role 'ward_clerk'; roles: administrator"):
        check_role("ward_clerk")
    install(load_role_file(write(tmp_path, WARD_CLERK), types))
    assert installed().names()[-1] == "ward_clerk"
    assert check_role("ward_clerk") == "ward_clerk"
    with pytest.raises(ValueError, match=r"roles: .*device, ward_clerk"):
        check_role("system")
