"""Anchors of the audit trail: the head (record number and hash) signed with the server key,
kept outside the database, so that a rewrite of the whole trail is detected.

The hash chain catches any edit that leaves a later row in place, but someone able to rewrite
the table and its head from some record on can re-hash everything after it. An anchor taken
earlier and stored elsewhere (a log shipped off the host, a backup, a ticket) pins record
``seq`` to ``hash``: ``check`` fails when the trail no longer holds that record with that hash,
or when the anchor's signature does not verify with this server's keys (RS256, ``sec_key``,
the same keys as the access tokens; the JWS ``typ`` is ``audit-anchor`` so an anchor is never
mistaken for a token). An anchor file holds one JSON object per line; every line is checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import orjson

from medarchive.security.audit import AuditTrail, Problem
from medarchive.security.tokens import ALGORITHM, TokenService

KIND = "audit-anchor"


@dataclass(frozen=True, slots=True)
class Anchor:
    """Record ``seq`` had hash ``hash`` at ``at`` (Unix seconds); ``jws`` signs the three."""

    seq: int
    hash: str
    at: int
    jws: str

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash, "at": self.at, "jws": self.jws}


def take(trail: AuditTrail, tokens: TokenService) -> Anchor:
    """An anchor of the trail's current head, signed with the server's signing key."""
    seq, digest = trail.head()
    at = int(trail.now().timestamp())
    key = next(iter(tokens.keys().values()))
    jws = jwt.encode({"seq": seq, "hash": digest, "iat": at}, key.private, algorithm=ALGORITHM,
                     headers={"kid": key.kid, "typ": KIND})
    return Anchor(seq, digest, at, jws)


def read(path: Path) -> Iterator[dict[str, Any]]:
    """The anchors in a file written by ``medarchive audit anchor`` (one JSON per line)."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError:
            raise ValueError(f"{path}:{number} is not an anchor (malformed JSON)") from None
        if not isinstance(value, dict) or "jws" not in value:
            raise ValueError(f"{path}:{number} is not an anchor (no jws)")
        yield value


def check(trail: AuditTrail, tokens: TokenService, anchor: dict[str, Any]) -> Problem | None:
    """None when the trail still holds the anchored record with the anchored hash."""
    token = str(anchor.get("jws"))
    try:
        header = jwt.get_unverified_header(token)
        key = tokens.keys().get(str(header.get("kid")))
        if key is None or header.get("typ") != KIND:
            raise jwt.InvalidTokenError("not signed by this server's keys")
        claims = jwt.decode(token, key.private.public_key(), algorithms=[ALGORITHM],
                            options={"require": ["seq", "hash", "iat"]})
    except jwt.PyJWTError as exc:
        return Problem(int(anchor.get("seq") or 0),
                       f"the anchor's signature does not verify: {exc}")
    seq, digest = int(claims["seq"]), str(claims["hash"])
    if seq == 0:
        return None
    found = trail.hash_at(seq)
    if found is None:
        return Problem(seq, f"the anchored record {seq} is missing")
    if found != digest:
        return Problem(seq, f"record {seq} no longer has the hash anchored at {claims['iat']}: "
                       "the trail was rewritten")
    return None
