"""The commands: backup create/verify/prune/key-escrow, restore (with --until), drill; and the
server's backup schedule."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from backup_helpers import at, put, state
from click.testing import Result
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from medarchive.backup.archive import backup_ids
from medarchive.backup.schedule import BackupSchedule
from medarchive.cli.main import app
from medarchive.cli.restore import parse_until
from medarchive.settings import load_settings, parse_interval
from medarchive.store.base import to_micros
from medarchive.store.sql.store import SqlStore

Open = Callable[[str], SqlStore]


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDARCHIVE_BACKUP_KEY_FILE", str(tmp_path / "keys" / "backup.key"))
    monkeypatch.setenv("MEDARCHIVE_BACKUP_DIR", str(tmp_path / "backups"))
    return tmp_path


def run(url: str, *args: str) -> Result:
    return CliRunner().invoke(app, ["--database-url", url, *args])


def test_backup_verify_restore_round_trip(env: Path, sqlite_url: str, open_sql: Open) -> None:
    source = open_sql(sqlite_url)
    for i in range(5):
        put(source, "Patient", f"p{i}", at(i))
    assert run(sqlite_url, "backup", "create").exit_code == 0
    put(source, "Patient", "p0", at(10), family="Changed")
    made = run(sqlite_url, "backup", "create", "--incremental")
    assert made.exit_code == 0 and "incremental backup" in made.output
    verified = run(sqlite_url, "backup", "verify")
    assert verified.exit_code == 0 and "VERIFIED" in verified.stdout
    target = f"sqlite:///{env / 'restored.db'}"
    restored = run(target, "restore", "--from", str(env / "backups"))
    assert restored.exit_code == 0, restored.output
    assert state(open_sql(target))["versions"] == state(source)["versions"]
    again = run(target, "restore", "--from", str(env / "backups"))
    assert again.exit_code == 1 and "--force" in again.output
    early = run(target, "restore", "--from", str(env / "backups"), "--force", "--until",
                "2026-01-01T00:05:00Z")
    assert early.exit_code == 0, early.output
    assert len(state(open_sql(target))["versions"]) == 5
    bad = run(target, "restore", "--from", str(env / "backups"), "--until", "yesterday")
    assert bad.exit_code == 1 and "ISO 8601" in bad.output


def test_verify_fails_on_damage(env: Path, sqlite_url: str, open_sql: Open) -> None:
    put(open_sql(sqlite_url), "Patient", "p", at(0))
    run(sqlite_url, "backup", "create")
    folder = env / "backups" / backup_ids(env / "backups")[0] / "data"
    victim = sorted(folder.iterdir())[0]
    victim.write_bytes(victim.read_bytes()[:-1])
    result = run(sqlite_url, "backup", "verify")
    assert result.exit_code == 1 and "NOT VERIFIED" in result.stdout


def test_prune_escrow_and_memory_store(env: Path, sqlite_url: str, open_sql: Open) -> None:
    put(open_sql(sqlite_url), "Patient", "p", at(0))
    for _ in range(3):
        run(sqlite_url, "backup", "create")
    pruned = run(sqlite_url, "backup", "prune", "--keep-daily", "0", "--keep-weekly", "0",
                 "--keep-monthly", "0")
    assert pruned.exit_code == 0 and len(backup_ids(env / "backups")) == 1
    escrow = run(sqlite_url, "backup", "key-escrow", "--to", str(env / "escrow.key"))
    assert escrow.exit_code == 0 and (env / "escrow.key").exists()
    memory = run("memory://", "backup", "create")
    assert memory.exit_code == 1 and "SQL database" in memory.output


def test_drill_command_writes_both_reports(env: Path, sqlite_url: str, open_sql: Open) -> None:
    put(open_sql(sqlite_url), "Patient", "p", at(0))
    result = run(sqlite_url, "drill", "--scenario", "lost-database", "--writes", "3",
                 "--report", str(env / "drill.json"))
    assert result.exit_code == 0, result.output
    assert orjson.loads((env / "drill.json").read_bytes())["passed"]
    assert "lost-database" in (env / "drill.md").read_text()


def test_schedule_takes_full_then_incremental_backups(env: Path, sqlite_url: str,
                                                      open_sql: Open) -> None:
    put(open_sql(sqlite_url), "Patient", "p", at(0))
    settings = load_settings({"database_url": sqlite_url, "backup_schedule": "1h",
                              "backup_full_every": 2, "backup_keep_daily": 1,
                              "backup_keep_weekly": 0, "backup_keep_monthly": 0})
    schedule = BackupSchedule(settings)
    made = [schedule.run_once() for _ in range(3)]
    assert [m.rsplit("-", 1)[1] for m in made] == ["full", "incr", "full"]
    assert backup_ids(env / "backups") == made[2:]  # retention ran after each backup


@given(st.integers(1, 10_000), st.sampled_from(["s", "m", "h", "d", ""]))
def test_interval_parser(number: int, unit: str) -> None:
    factor = {"s": 1, "m": 60, "h": 3600, "d": 86400, "": 1}[unit]
    assert parse_interval(f"{number}{unit}", "backup_schedule") == number * factor


@pytest.mark.parametrize("text", ["soon", "0h", "-5m", "5w"])
def test_bad_intervals(text: str) -> None:
    with pytest.raises(ValueError, match="backup_schedule"):
        parse_interval(text, "backup_schedule")


def test_schedule_thread_backs_up_in_the_background(env: Path, sqlite_url: str,
                                                    open_sql: Open) -> None:
    put(open_sql(sqlite_url), "Patient", "p", at(0))
    schedule = BackupSchedule(load_settings({"database_url": sqlite_url,
                                             "backup_schedule": "0.05s"}))
    schedule.start()
    try:
        for _ in range(400):
            if len(backup_ids(env / "backups")) >= 2:
                break
            threading.Event().wait(0.05)
    finally:
        schedule.stop()
    made = backup_ids(env / "backups")
    assert len(made) >= 2 and made[0].endswith("-full") and made[1].endswith("-incr")


def test_backup_and_restore_are_audited(env: Path, sqlite_url: str, open_sql: Open) -> None:
    put(open_sql(sqlite_url), "Patient", "p", at(0))
    assert run(sqlite_url, "backup", "create").exit_code == 0
    target = f"sqlite:///{env / 'restored.db'}"
    assert run(target, "restore", "--from", str(env / "backups")).exit_code == 0
    def audited(url: str) -> list[str]:
        shown = run(url, "audit", "show").stdout.splitlines()
        return [orjson.loads(line)["outcomeDesc"] for line in shown]
    assert audited(sqlite_url)[0].startswith("backup create full")
    assert audited(target)[-1].startswith("restore from")  # after what the backup held
    assert run(target, "audit", "verify").exit_code == 0


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2999, 1, 1),
                    timezones=st.just(UTC)))
def test_until_parser(moment: datetime) -> None:
    text = moment.isoformat().replace("+00:00", "Z")
    assert parse_until(text) == to_micros(moment)
    assert parse_until(moment.replace(tzinfo=None).isoformat()) == to_micros(moment)


def test_list_shows_chains_and_unreadable_backups(env: Path, sqlite_url: str,
                                                  open_sql: Open) -> None:
    put(open_sql(sqlite_url), "Patient", "p", at(0))
    run(sqlite_url, "backup", "create")
    run(sqlite_url, "backup", "create", "--incremental")
    ids = backup_ids(env / "backups")
    (env / "backups" / ids[0] / "manifest.sig").write_bytes(b"x" * 64)
    listed = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["--database-url", sqlite_url,
                                                            "backup", "list"])
    assert listed.exit_code == 0
    assert ids[1] in listed.stdout and "incremental" in listed.stdout
    assert "unreadable" in listed.stdout and "signature is invalid" in listed.stdout
