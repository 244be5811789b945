"""Time-based one-time passwords for two-factor login (RFC 6238 over RFC 4226 HOTP).

Written out because it is twenty lines and fully specified; the tests check the RFC 6238
Appendix B vectors. Secrets are base32 (what authenticator apps scan from an otpauth:// URI).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from urllib.parse import quote

DIGESTS = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}


def new_secret() -> str:
    """A random 160-bit secret, base32 without padding (RFC 4226 §4 R6)."""
    return base64.b32encode(secrets.token_bytes(20)).decode().rstrip("=")


def _key(secret: str) -> bytes:
    padded = secret.upper() + "=" * (-len(secret) % 8)
    return base64.b32decode(padded)


def hotp(key: bytes, counter: int, digits: int = 6, algorithm: str = "SHA1") -> str:
    """HOTP value of ``counter`` (RFC 4226 §5.3: HMAC, dynamic truncation, modulo)."""
    mac = hmac.new(key, struct.pack(">Q", counter), DIGESTS[algorithm]).digest()
    offset = mac[-1] & 0x0F
    code = struct.unpack(">I", mac[offset:offset + 4])[0] & 0x7FFFFFFF
    return str(code % 10 ** digits).zfill(digits)


def totp(key: bytes, at: float, *, step: int = 30, digits: int = 6,
         algorithm: str = "SHA1") -> str:
    """TOTP value at Unix time ``at`` (RFC 6238 §4.2: T = floor(time / step))."""
    return hotp(key, int(at) // step, digits, algorithm)


def matching_step(secret: str, code: str, at: float, *, window: int = 1) -> int | None:
    """The time step whose TOTP of ``secret`` is ``code``, searching ``window`` steps either
    side of ``at`` (RFC 6238 §5.2 allows one step of clock drift); None when none matches."""
    if not code.isdigit() or len(code) != 6:
        return None
    key = _key(secret)
    for drift in range(-window, window + 1):
        moment = at + drift * 30
        if moment < 0:
            continue  # no time step before the Unix epoch (the counter is unsigned)
        if hmac.compare_digest(totp(key, moment), code):
            return int(moment) // 30
    return None


def verify(secret: str, code: str, at: float, *, window: int = 1) -> bool:
    """True when ``code`` is the TOTP of ``secret`` within ``window`` steps of ``at``."""
    return matching_step(secret, code, at, window=window) is not None


def provisioning_uri(secret: str, username: str, issuer: str = "MedArchive") -> str:
    """The otpauth:// URI an authenticator app imports (Key Uri Format)."""
    return (f"otpauth://totp/{quote(issuer)}:{quote(username)}?secret={secret}"
            f"&issuer={quote(issuer)}")
