"""Anchoring the audit trail, through the real CLI on SQLite and PostgreSQL: ``audit anchor``
signs the head, ``audit verify --anchor`` accepts the untouched trail, and catches a rewrite of
the whole table (which the chain alone cannot see), a truncation below the anchor and a forged
anchor; exit code 1 names the record."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner, Result

from medarchive.cli.main import app
from medarchive.security.actor import Actor
from medarchive.security.audit import GENESIS, AuditTrail, chain_hash
from medarchive.security.audit_events import audit_event
from medarchive.store.sql.database import Database, open_database
from medarchive.store.sql.migrations import migrate

pytestmark = pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)


def run(database_url: str, *args: str) -> Result:
    return CliRunner().invoke(app, ["--database-url", database_url, *args])


def _fill(db: Database, n: int) -> None:
    migrate(db)
    trail = AuditTrail(db, lambda: datetime(2026, 1, 1, tzinfo=UTC))
    for i in range(n):
        trail.record(audit_event(Actor("user", "u", "nurse", ()), "read", trail.now(),
                                 status=200, entities=[f"Patient/{i}"]))


def _rewrite(db: Database) -> None:
    """Forge every body and re-hash the whole chain and the head: ``verify`` alone passes."""
    with db.writing() as cur:
        cur.execute("SELECT seq, body FROM audit_event ORDER BY seq")
        rows = cur.fetchall()
        prev = GENESIS
        for seq, body in rows:
            forged = body.replace('"nurse"', '"physician"')
            digest = chain_hash(prev, int(seq), forged)
            cur.execute(db.sql("UPDATE audit_event SET body = ?, prev_hash = ?, hash = ? "
                               "WHERE seq = ?"), (forged, prev, digest, seq))
            prev = digest
        cur.execute(db.sql("UPDATE audit_head SET hash = ? WHERE id = 1"), (prev,))


def test_anchor_then_verify(database_url: str, tmp_path: Path) -> None:
    anchors = tmp_path / "anchors.jsonl"
    db = open_database(database_url)
    try:
        assert run(database_url, "audit", "anchor", "--output", str(anchors)).exit_code == 0
        _fill(db, 4)
        taken = run(database_url, "audit", "anchor", "--output", str(anchors))
        assert taken.exit_code == 0, taken.output
        printed = json.loads(taken.stdout)
        assert printed["seq"] == 4 and len(printed["hash"]) == 64 and printed["jws"].count(".") == 2
        assert [json.loads(line)["seq"] for line in anchors.read_text().splitlines()] == [0, 4]
        _fill(db, 3)  # the trail goes on after the anchor
        good = run(database_url, "audit", "verify", "--anchor", str(anchors))
        assert good.exit_code == 0 and "7 records; 2 anchors hold" in good.output, good.output
        _rewrite(db)
        assert run(database_url, "audit", "verify").exit_code == 0  # the chain alone is blind
        caught = run(database_url, "audit", "verify", "--anchor", str(anchors))
        assert caught.exit_code == 1
        assert "record 4" in caught.output and "rewritten" in caught.output
    finally:
        db.close()


def test_forged_or_missing_anchors(database_url: str, tmp_path: Path) -> None:
    db = open_database(database_url)
    try:
        _fill(db, 3)
        taken = json.loads(run(database_url, "audit", "anchor").stdout)
        forged = tmp_path / "forged.jsonl"
        head, payload, signature = taken["jws"].split(".")
        claims = orjson.loads(_unb64(payload))
        claims["hash"] = "0" * 64
        forged.write_text(json.dumps({**taken, "jws": ".".join(
            [head, _b64(orjson.dumps(claims)), signature])}) + "\n")
        bad = run(database_url, "audit", "verify", "--anchor", str(forged))
        assert bad.exit_code == 1 and "signature" in bad.output
        future = tmp_path / "future.jsonl"
        future.write_text(json.dumps(taken) + "\n")
        with db.writing() as cur:  # truncate the trail below the anchor, head included
            cur.execute("DELETE FROM audit_event WHERE seq = 3")
            cur.execute(db.sql("UPDATE audit_head SET seq = 2, hash = (SELECT hash FROM "
                               "audit_event WHERE seq = 2) WHERE id = 1"))
        assert run(database_url, "audit", "verify").exit_code == 0
        gone = run(database_url, "audit", "verify", "--anchor", str(future))
        assert gone.exit_code == 1 and "record 3" in gone.output
        junk = tmp_path / "junk.jsonl"
        junk.write_text("not json\n")
        assert run(database_url, "audit", "verify", "--anchor", str(junk)).exit_code == 1
    finally:
        db.close()


def _unb64(text: str) -> bytes:
    import base64
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64(data: bytes) -> str:
    import base64
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
