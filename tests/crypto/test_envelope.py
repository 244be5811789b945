"""Sealed bodies (crypto.envelope): round trips, and every alteration is caught."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from medarchive.crypto.envelope import (
    HEADER_SIZE,
    KeyUnavailable,
    body_aad,
    is_sealed,
    new_key,
    open_sealed,
    seal,
    sealed_kid,
)

KEY = AESGCM(new_key())
kids = st.integers(1, 2**62)


@given(body=st.binary(max_size=4096), kid=kids)
def test_round_trip_and_header(body: bytes, kid: int) -> None:
    aad = body_aad("Patient", "p1", 3)
    sealed = seal(KEY, kid, body, aad)
    assert is_sealed(sealed) and sealed_kid(sealed) == kid
    assert len(sealed) == HEADER_SIZE + len(body) + 16
    assert open_sealed(KEY, sealed, aad) == body


@given(body=st.binary(min_size=1, max_size=512), data=st.data())
def test_any_flipped_byte_after_the_kid_is_refused(body: bytes, data: st.DataObject) -> None:
    sealed = bytearray(seal(KEY, 7, body, b"row"))
    position = data.draw(st.integers(12, len(sealed) - 1))  # nonce, ciphertext or tag
    sealed[position] ^= data.draw(st.integers(1, 255))
    with pytest.raises(KeyUnavailable, match="failed authentication"):
        open_sealed(KEY, bytes(sealed), b"row")


def test_a_body_moved_to_another_row_or_key_does_not_open() -> None:
    sealed = seal(KEY, 1, b'{"resourceType":"Patient"}', body_aad("Patient", "a", 1))
    for aad in (body_aad("Patient", "b", 1), body_aad("Patient", "a", 2)):
        with pytest.raises(KeyUnavailable):
            open_sealed(KEY, sealed, aad)
    with pytest.raises(KeyUnavailable):
        open_sealed(AESGCM(new_key()), sealed, body_aad("Patient", "a", 1))


def test_plaintext_json_is_not_mistaken_for_a_sealed_body() -> None:
    assert not is_sealed(b'{"resourceType":"Patient"}') and not is_sealed(b"")
    assert seal(KEY, 1, b"x", b"") != seal(KEY, 1, b"x", b"")  # a fresh nonce every time
