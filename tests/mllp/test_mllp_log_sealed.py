"""The HL7 message log at rest: with encryption on no message content is stored in plaintext
(SQLite file and WAL, PostgreSQL columns), dead letters still show and replay their exact
bytes, old plaintext rows are sealed when the log opens, and a missing key fails loudly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from mllp_builders import Archive, adt
from typer.testing import CliRunner

from medarchive.app import build_gateway
from medarchive.cli.main import app
from medarchive.crypto.envelope import KeyUnavailable
from medarchive.mllp.log import LogEntry, SqlMessageLog
from medarchive.settings import Settings
from medarchive.store.sql.keyadmin import shred

SECRETS = (b"Zebulonski", b"MRN77\x0031904", b"Quintavalle", b"MRN5502817")


def refused() -> bytes:
    """A message refused for a NUL byte in the middle of its patient's record number."""
    return adt("S1", mrn="MRN7731904", family="Zebulonski").replace(
        "MRN7731904", "MRN77\x0031904").encode()


def accepted() -> bytes:
    return adt("S2", mrn="MRN5502817", family="Quintavalle").encode()


def settings(url: str, tmp_path: Path, encryption: str) -> Settings:
    return Settings(database_url=url, auth="off", encryption=encryption,
                    encryption_key_file=str(tmp_path / "kek"))


@pytest.fixture(params=["on", "off"])
def encryption(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def logged(sql_url: str, tmp_path: Path, encryption: str) -> Iterator[Archive]:
    gateway, services = build_gateway(settings(sql_url, tmp_path, encryption))
    archive = Archive(services, gateway.log, gateway)
    assert gateway.handle(refused()).code == "AR"
    assert gateway.handle(accepted()).code == "AA"
    yield archive
    gateway.close()
    services.close()


def stored(url: str, archive: Archive) -> bytes:
    """Every byte the database holds for the log: the SQLite file and its WAL, or each
    PostgreSQL row as text (bytea in hex, so each secret is also looked for in hex)."""
    if url.startswith("sqlite"):
        path = Path(url.removeprefix("sqlite:///"))
        wal = Path(f"{path}-wal")
        return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    db = archive.log.db  # type: ignore[attr-defined]
    with db.reading() as cur:
        cur.execute("SELECT t::text FROM hl7_message_log t")
        return "\n".join(row[0] for row in cur.fetchall()).encode()


def found(haystack: bytes) -> set[bytes]:
    return {s for s in SECRETS if s in haystack or s.hex().encode() in haystack}


def test_no_message_content_is_stored_in_plaintext(sql_url: str, encryption: str,
                                                   logged: Archive) -> None:
    [dead] = logged.log.entries(status="dead")
    [done] = logged.log.entries(status="done")
    assert dead.message_bytes() == refused() and "MRN77\x0031904" in dead.raw
    assert "Quintavalle" in done.raw
    leaked = found(stored(sql_url, logged))
    if encryption == "on":
        assert leaked == set()
    else:  # the control: the same scan finds every secret in a plaintext log
        assert leaked == set(SECRETS)


def test_a_sealed_dead_letter_replays_its_exact_bytes(sql_url: str, encryption: str,
                                                      logged: Archive) -> None:
    [dead] = logged.log.entries(status="dead")
    outcome = logged.gateway.replay(dead.id)
    assert outcome.code == "AR"  # the NUL is still there: refused again, same dead letter
    again = logged.log.get(dead.id)
    assert again is not None and again.attempts == 2 and again.note == "replay refused"
    assert again.message_bytes() == refused() and "NUL" in again.error
    fixed = logged.gateway.replay(dead.id, adt("S1", mrn="MRN7731904",
                                               family="Zebulonski").encode())
    assert fixed.code == "AA"
    replayed = logged.log.get(dead.id)
    assert replayed is not None and replayed.status == "replayed"
    assert replayed.note == f"replayed as log entry {fixed.log_id}"
    assert replayed.message_bytes() == refused()
    assert (found(stored(sql_url, logged)) == set()) == (encryption == "on")


def test_cli_show_and_list_give_the_exact_bytes(sql_url: str, tmp_path: Path,
                                                encryption: str, logged: Archive) -> None:
    [dead] = logged.log.entries(status="dead")
    env = {"MEDARCHIVE_DATABASE_URL": sql_url, "MEDARCHIVE_AUTH": "off",
           "MEDARCHIVE_ENCRYPTION": encryption,
           "MEDARCHIVE_ENCRYPTION_KEY_FILE": str(tmp_path / "kek")}
    runner = CliRunner()
    shown = runner.invoke(app, ["hl7", "deadletter", "show", str(dead.id), "--message"],
                          env=env)
    assert shown.exit_code == 0, shown.output
    assert shown.stdout_bytes == refused()
    [row] = [orjson.loads(line) for line in runner.invoke(
        app, ["hl7", "deadletter", "list", "--raw"], env=env).stdout.splitlines()]
    assert row["raw"] == dead.raw and row["error"] == dead.error
    discarded = runner.invoke(app, ["hl7", "deadletter", "discard", str(dead.id),
                                    "--reason", "test"], env=env)
    assert discarded.exit_code == 0, discarded.output
    entry = logged.log.get(dead.id)
    assert entry is not None and entry.status == "discarded"
    assert entry.message_bytes() == refused() and entry.note.endswith(": test")


@pytest.mark.parametrize("encryption", ["on"])
def test_without_the_key_a_sealed_log_fails_loudly(sql_url: str, tmp_path: Path,
                                                   encryption: str, logged: Archive) -> None:
    db = logged.log.db  # type: ignore[attr-defined]
    with pytest.raises(KeyUnavailable, match="entry 1 is sealed"):
        SqlMessageLog(db).get(1)
    env = {"MEDARCHIVE_DATABASE_URL": sql_url, "MEDARCHIVE_AUTH": "off",
           "MEDARCHIVE_ENCRYPTION": "off"}
    shown = CliRunner().invoke(app, ["hl7", "deadletter", "show", "1"], env=env)
    assert shown.exit_code == 1 and "is sealed" in shown.output
    with db.writing() as cur:  # another row's sealed value does not open here
        cur.execute("UPDATE hl7_message_log SET sealed = "
                    "(SELECT sealed FROM hl7_message_log WHERE id = 2) WHERE id = 1")
    with pytest.raises(KeyUnavailable, match="failed authentication"):
        logged.log.get(1)


@pytest.mark.parametrize("encryption", ["on"])
def test_a_shredded_patient_s_messages_read_as_erased(encryption: str,
                                                      logged: Archive) -> None:
    [done] = logged.log.entries(status="done")
    [patient] = {"/".join(r.split("/")[:2]) for r in done.resources
                 if r.startswith("Patient/")}
    keyring = logged.services.store.keyring  # type: ignore[attr-defined]
    shred(keyring, patient)
    erased = logged.log.get(done.id)
    assert erased is not None and erased.raw == "" and "erased" in erased.error
    [dead] = logged.log.entries(status="dead")  # under the system key: a shred does not reach it
    assert dead.message_bytes() == refused()


def test_plaintext_rows_are_sealed_when_the_log_opens_with_encryption(
        sql_url: str, tmp_path: Path) -> None:
    gateway, services = build_gateway(settings(sql_url, tmp_path, "off"))
    assert gateway.handle(refused()).code == "AR"
    assert gateway.handle(accepted()).code == "AA"
    before = gateway.log.entries()
    gateway.close()
    services.close()
    gateway, services = build_gateway(settings(sql_url, tmp_path, "on"))
    try:
        archive = Archive(services, gateway.log, gateway)
        assert archive.log.entries() == before
        db = archive.log.db  # type: ignore[attr-defined]
        with db.reading() as cur:  # (the file still holds the plaintext bodies written then)
            cur.execute("SELECT count(*) FROM hl7_message_log WHERE sealed IS NULL OR "
                        "raw <> '' OR error <> '' OR unmapped <> '[]' OR note <> '' "
                        "OR data IS NOT NULL")
            assert cur.fetchone()[0] == 0
        assert gateway.handle(accepted()).code == "AA"  # the duplicate: acknowledged once
        assert archive.log.entries()[-1].duplicate
    finally:
        gateway.close()
        services.close()


def test_an_entry_records_the_same_sealed_or_not(sql_url: str, tmp_path: Path) -> None:
    entry = LogEntry(0, "2026-01-01T00:00:00Z", "hl7:F|A|1", "AE", "dead", "bad PID-5 Ann",
                     (), ("PID-13: 555-0100",), "MSH|x\rPID|1", data=b"MSH|x\rPID|1\x00",
                     note="n")
    results = []
    for encryption in ("off", "on"):
        gateway, services = build_gateway(settings(sql_url, tmp_path, encryption))
        try:
            log_id = gateway.log.record(entry)
            results.append(gateway.log.get(log_id))
        finally:
            gateway.close()
            services.close()
    off, on = results
    assert off is not None and on is not None
    assert on.data == entry.data and on.unmapped == entry.unmapped and on.note == "n"
    assert (on.error, on.raw, on.data) == (off.error, off.raw, off.data)
