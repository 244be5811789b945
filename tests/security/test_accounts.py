"""Accounts: password login, TOTP, lockout with back-off, clients."""

from __future__ import annotations

from typing import Any

import pytest

from medarchive.errors import Conflict, Unauthorized
from medarchive.security import totp
from medarchive.security.accounts import lock_seconds
from medarchive.security.passwords import WeakPassword
from medarchive.security.service import Security

PASSWORD = "a long enough passphrase"


def test_lock_back_off() -> None:
    assert [lock_seconds(n) for n in (1, 4, 5, 6, 7, 20)] == [0, 0, 30, 60, 120, 3600]


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_login_lockout_and_reset(security: Security, clock: Any) -> None:
    accounts = security.accounts
    accounts.add_user("alice", "physician", PASSWORD)
    with pytest.raises(Conflict):
        accounts.add_user("alice", "nurse", PASSWORD)
    with pytest.raises(WeakPassword):
        accounts.add_user("bob", "nurse", "short")
    with pytest.raises(ValueError):
        accounts.add_user("carol", "emperor", PASSWORD)
    assert accounts.authenticate("alice", PASSWORD).role == "physician"
    for _ in range(5):
        with pytest.raises(Unauthorized):
            accounts.authenticate("alice", "wrong password!")
    with pytest.raises(Unauthorized):  # locked: even the right password fails
        accounts.authenticate("alice", PASSWORD)
    clock.advance(31)
    assert accounts.authenticate("alice", PASSWORD).failures == 0
    accounts.set_disabled("alice", True)
    with pytest.raises(Unauthorized):
        accounts.authenticate("alice", PASSWORD)
    with pytest.raises(Unauthorized):
        accounts.authenticate("nobody", PASSWORD)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_totp_second_factor(security: Security, clock: Any) -> None:
    accounts = security.accounts
    accounts.add_user("dora", "nurse", PASSWORD)
    secret = accounts.enroll_totp("dora")
    with pytest.raises(Unauthorized):
        accounts.authenticate("dora", PASSWORD)
    key = totp._key(secret)
    code = totp.totp(key, clock().timestamp())
    assert accounts.authenticate("dora", PASSWORD, code).totp_enrolled
    with pytest.raises(Unauthorized):  # the same code twice: a replay
        accounts.authenticate("dora", PASSWORD, code)
    with pytest.raises(Unauthorized):
        accounts.authenticate("dora", PASSWORD, "000000" if code != "000000" else "111111")


def test_client_secret(security: Security) -> None:
    client, secret = security.accounts.add_client("lab", "system/*.rs")
    assert secret and client.has_secret
    assert security.accounts.check_client_secret(client.client_id, secret).name == "lab"
    with pytest.raises(Unauthorized):
        security.accounts.check_client_secret(client.client_id, secret + "x")
