"""TOTP against the RFC 6238 Appendix B test vectors."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from medarchive.security import totp

SEEDS = {"SHA1": b"12345678901234567890",
         "SHA256": b"12345678901234567890123456789012",
         "SHA512": b"1234567890123456789012345678901234567890123456789012345678901234"}
VECTORS = [  # RFC 6238 Appendix B: time, algorithm, 8-digit TOTP
    (59, "SHA1", "94287082"), (59, "SHA256", "46119246"), (59, "SHA512", "90693936"),
    (1111111109, "SHA1", "07081804"), (1111111109, "SHA256", "68084774"),
    (1111111109, "SHA512", "25091201"), (1111111111, "SHA1", "14050471"),
    (1234567890, "SHA1", "89005924"), (2000000000, "SHA1", "69279037"),
    (20000000000, "SHA1", "65353130"), (20000000000, "SHA256", "77737706"),
    (20000000000, "SHA512", "47863826")]


@pytest.mark.parametrize(("at", "algorithm", "expected"), VECTORS)
def test_rfc6238_vectors(at: int, algorithm: str, expected: str) -> None:
    assert totp.totp(SEEDS[algorithm], at, digits=8, algorithm=algorithm) == expected


def test_verify_accepts_one_step_of_drift_only() -> None:
    secret = base64.b32encode(SEEDS["SHA1"]).decode()
    code = totp.totp(SEEDS["SHA1"], 1_000_000)
    assert totp.verify(secret, code, 1_000_000)
    assert totp.verify(secret, code, 1_000_000 + 30)
    assert not totp.verify(secret, code, 1_000_000 + 90)
    assert not totp.verify(secret, "12345", 1_000_000)


@given(st.text(max_size=12))
def test_verify_never_crashes_on_input(code: str) -> None:
    assert totp.verify(totp.new_secret(), code, 0) in (True, False)
