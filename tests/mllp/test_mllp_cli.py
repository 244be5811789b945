"""``medarchive hl7 deadletter list|replay`` against a SQLite database."""

from __future__ import annotations

from pathlib import Path

import orjson
from mllp_builders import adt
from typer.testing import CliRunner

from medarchive.cli.main import app
from medarchive.mllp.gateway import Gateway
from medarchive.mllp.log import open_message_log


def test_list_and_replay_a_fixed_message(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
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
