"""Password hashing and policy."""

from __future__ import annotations

import pytest

from medarchive.security.passwords import (
    WeakPassword,
    check_policy,
    hash_password,
    needs_rehash,
    verify_password,
)


def test_hash_is_argon2id_and_verifies() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "correct horse battery")
    assert not verify_password(stored, "correct horse batterY")
    assert not needs_rehash(stored)


def test_malformed_hash_never_matches() -> None:
    assert not verify_password("not-a-hash", "anything at all")


@pytest.mark.parametrize("password", ["short", "aaaaaaaaaaaaaaaa", "password1234",
                                      "xx-alice-was-here"])
def test_policy_refuses(password: str) -> None:
    with pytest.raises(WeakPassword):
        check_policy(password, "alice")


def test_policy_accepts_a_long_passphrase() -> None:
    check_policy("four random words here", "alice")
