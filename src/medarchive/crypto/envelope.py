"""Sealing and opening stored bodies with AES-256-GCM (NIST SP 800-38D) under a data key.

A sealed body is self-describing, so a row copied as it is stored (a backup, a dump) keeps
everything needed to open it except the key itself::

    b"MAE1" | kid (8 bytes, big-endian) | nonce (12 bytes) | ciphertext | tag (16 bytes)

``kid`` names the data key (a row of ``data_key``); the nonce is random per seal (96 bits, the
size GCM is specified for); the associated data binds the ciphertext to the resource type, id
and version it belongs to, so a body moved to another row fails to open instead of showing
another record. Plaintext bodies (written before encryption was on) start with ``{`` and are
told apart by the magic.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from medarchive.errors import FhirError, Gone

MAGIC = b"MAE1"
_HEADER = struct.Struct(">4sQ12s")
HEADER_SIZE = _HEADER.size
KEY_BYTES = 32  # AES-256


class Erased(Gone):
    """The record's data key was shredded (``medarchive keys shred``): it can never be read."""


class KeyUnavailable(FhirError):
    """A key needed to open a body or a data key is missing or wrong (500)."""

    status = 500
    code = "security"


def new_key() -> bytes:
    """A fresh random 256-bit key (os.urandom, the kernel CSPRNG)."""
    return os.urandom(KEY_BYTES)


def body_aad(resource_type: str, id: str, version: int) -> bytes:
    """The associated data of a body: the row it belongs to."""
    return f"{resource_type}/{id}/{version}".encode()


def is_sealed(body: bytes) -> bool:
    return body[:4] == MAGIC


def sealed_kid(body: bytes) -> int:
    """The data key id in a sealed body's header."""
    return int(_HEADER.unpack_from(body)[1])


def seal(aead: AESGCM, kid: int, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM encryption of ``plaintext`` under data key ``kid`` (SP 800-38D §7.1)."""
    nonce = os.urandom(12)
    return _HEADER.pack(MAGIC, kid, nonce) + aead.encrypt(nonce, plaintext, aad)


def open_sealed(aead: AESGCM, body: bytes, aad: bytes) -> bytes:
    """The plaintext of a sealed body (SP 800-38D §7.2); ``KeyUnavailable`` when the tag does not
    verify (wrong key, tampered or moved row)."""
    try:
        return aead.decrypt(body[12:HEADER_SIZE], body[HEADER_SIZE:], aad)  # nonce, sealed
    except InvalidTag:
        raise KeyUnavailable(f"a stored body (data key {sealed_kid(body)}) failed "
                             "authentication: wrong key, or the row was altered or moved") from None
