"""Password hashing (argon2id) and the password policy.

Passwords are never stored, only argon2id hashes (RFC 9106) with the library's recommended
parameters; ``needs_rehash`` lets a login upgrade old hashes when the parameters change. The
policy follows NIST SP 800-63B §5.1.1.2: length matters, composition rules do not, and a few
obviously guessable values are refused.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 12
MAX_LENGTH = 256
_GUESSABLE = frozenset({"password1234", "123456789012", "medarchive12", "qwertyuiopas",
                        "letmein12345", "administrator"})
_HASHER = PasswordHasher()  # stateless and thread-safe: parameters only, no configuration


class WeakPassword(ValueError):
    """The password does not meet the policy; the message says why."""


def check_policy(password: str, username: str = "") -> None:
    """Raise WeakPassword unless ``password`` meets the policy (NIST SP 800-63B §5.1.1.2)."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"a password may have at most {MAX_LENGTH} characters")
    lowered = password.lower()
    if lowered in _GUESSABLE or len(set(password)) < 4:
        raise WeakPassword("this password is too easy to guess")
    if username and username.lower() in lowered:
        raise WeakPassword("a password may not contain the user name")


def hash_password(password: str) -> str:
    """An argon2id hash in PHC string format (RFC 9106)."""
    return _HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    """True when ``password`` matches ``stored_hash``; malformed hashes never match."""
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    """True when the hash was made with weaker parameters than today's."""
    return _HASHER.check_needs_rehash(stored_hash)
