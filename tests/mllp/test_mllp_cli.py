"""``medarchive hl7 deadletter list|show|replay|discard`` against SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import orjson
from mllp_builders import adt
from typer.testing import CliRunner

from medarchive.cli.main import app
from medarchive.mllp.gateway import Gateway
from medarchive.mllp.log import open_message_log
from medarchive.store.sql.database import open_database


def test_list_and_replay_a_fixed_message(sql_url: str, tmp_path: Path) -> None:
    url = sql_url
    message_log = open_message_log(url)

    def unreachable(bundle: object, idempotency_key: str | None = None) -> dict[str, object]:
        raise OSError("store down")

    Gateway(unreachable, message_log).handle(adt("D1").encode())
    message_log.close()
    env = {"MEDARCHIVE_DATABASE_URL": url, "MEDARCHIVE_AUTH": "off"}
    runner = CliRunner()
    listed = runner.invoke(app, ["hl7", "deadletter", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    [row] = [orjson.loads(line) for line in listed.stdout.splitlines()]
    assert row["outcome"] == "AE" and row["key"] == "hl7:CITYHOSP|HIS|D1"
    shown = runner.invoke(app, ["hl7", "deadletter", "show", str(row["id"])], env=env)
    assert shown.exit_code == 0, shown.output
    detail = orjson.loads(shown.stdout)
    assert detail["status"] == "dead" and detail["raw"].startswith("MSH|")
    assert "store down" not in detail["raw"] and "OSError" in detail["error"]
    fixed = tmp_path / "fixed.hl7"
    fixed.write_text(adt("D1", family="Fixed"))
    replayed = runner.invoke(app, ["hl7", "deadletter", "replay", str(row["id"]),
                                   "--file", str(fixed)], env=env)
    assert replayed.exit_code == 0, replayed.output
    assert "AA" in replayed.stdout
    again = runner.invoke(app, ["hl7", "deadletter", "list"], env=env)
    assert again.stdout.strip() == ""
    missing = runner.invoke(app, ["hl7", "deadletter", "replay", "999"], env=env)
    assert missing.exit_code == 1
    assert runner.invoke(app, ["hl7", "deadletter", "show", "999"], env=env).exit_code == 1
    # the replayed message's own row lists what it wrote
    replay_row = orjson.loads(runner.invoke(app, ["hl7", "deadletter", "show", "2"],
                                            env=env).stdout)
    assert replay_row["outcome"] == "AA" and replay_row["status"] == "done"
    assert any(r.startswith("Patient/") for r in replay_row["resources"])


def audit_details(url: str) -> list[tuple[str, str]]:
    """(action, detail) of every AuditEvent in the trail, oldest first."""
    db = open_database(url)
    try:
        with db.reading() as cur:
            cur.execute("SELECT body FROM audit_event ORDER BY seq")
            events = [orjson.loads(body) for (body,) in cur.fetchall()]
    finally:
        db.close()
    return [(e["action"], e["outcomeDesc"].removesuffix("; status=200")) for e in events
            if e["outcomeDesc"].startswith("hl7 ")]


def test_failed_replay_discard_and_audited_reads(sql_url: str, tmp_path: Path) -> None:
    message_log = open_message_log(sql_url)
    data = adt("X1").replace("PID|1||12345", "PID|1||12\x0045").encode()
    dead = Gateway(lambda bundle, idempotency_key=None: {}, message_log).handle(data)
    message_log.close()
    env = {"MEDARCHIVE_DATABASE_URL": sql_url, "MEDARCHIVE_AUTH": "off"}
    runner = CliRunner()
    entry = str(dead.log_id)
    exact = runner.invoke(app, ["hl7", "deadletter", "show", entry, "--message"], env=env)
    assert exact.exit_code == 0 and exact.stdout_bytes == data
    detail = orjson.loads(runner.invoke(app, ["hl7", "deadletter", "show", entry],
                                          env=env).stdout)
    assert "12\x0045" in detail["raw"] and detail["attempts"] == 1
    # replayed as received it is refused again: the same dead letter, one attempt more
    again = runner.invoke(app, ["hl7", "deadletter", "replay", entry], env=env)
    assert again.exit_code == 1 and f"AR (log entry {entry})" in again.stdout
    [row] = [orjson.loads(line) for line in runner.invoke(
        app, ["hl7", "deadletter", "list", "--raw"], env=env).stdout.splitlines()]
    assert row["id"] == dead.log_id and row["attempts"] == 2 and "NUL" in row["error"]
    refused = runner.invoke(app, ["hl7", "deadletter", "discard", entry, "--reason", " "],
                            env=env)
    assert refused.exit_code == 1
    gone = runner.invoke(app, ["hl7", "deadletter", "discard", entry, "--reason",
                               "test feed, never to be applied"], env=env)
    assert gone.exit_code == 0, gone.output
    assert runner.invoke(app, ["hl7", "deadletter", "list"], env=env).stdout == ""
    shown = orjson.loads(runner.invoke(app, ["hl7", "deadletter", "show", entry],
                                         env=env).stdout)
    assert shown["status"] == "discarded" and "test feed" in shown["note"]
    twice = runner.invoke(app, ["hl7", "deadletter", "discard", entry, "--reason", "x"],
                          env=env)
    assert twice.exit_code == 1 and "discarded, not dead" in twice.output
    replay_discarded = runner.invoke(app, ["hl7", "deadletter", "replay", entry], env=env)
    assert replay_discarded.exit_code == 1
    assert audit_details(sql_url) == [
        ("R", f"hl7 deadletter show {entry} --message"),
        ("R", f"hl7 deadletter show {entry}"),
        ("U", f"hl7 deadletter replay {entry}: AR"),
        ("R", f"hl7 deadletter list --raw: entries {entry}"),
        ("U", f"hl7 deadletter discard {entry}: test feed, never to be applied"),
        ("R", f"hl7 deadletter show {entry}"),
    ]
