"""Dead letters: kept exactly as received (NUL bytes included, on PostgreSQL too), refused with
an ERR segment over a real MLLP connection, and replayed onto the same dead letter."""

from __future__ import annotations

import socket

import pytest
from mllp_builders import Archive, adt, exchange

from medarchive.hl7v2 import parse_message
from medarchive.mllp.log import LogEntry, SqlMessageLog
from medarchive.store.sql.database import open_database


def send(port: int, data: bytes) -> bytes:
    """Send one framed message on a new connection and return the framed answer's content."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        return exchange(sock, data)


def test_a_message_with_nul_bytes_is_refused_and_kept_exactly(archive: Archive,
                                                             listener: int) -> None:
    data = adt("N1").replace("PID|1||12345", "PID|1||12\x0045").encode() + b"\xff\x00"
    ack = parse_message(send(listener, data))
    msa, err = ack.segment("MSA"), ack.segment("ERR")
    assert msa is not None and msa.value(1) == "AR"
    assert err is not None and err.value(3) == "102" and "NUL" in err.value(8)
    assert archive.services.store.changes(0, 10) == []
    [dead] = archive.log.entries(status="dead")
    assert dead.data == data and dead.message_bytes() == data
    assert "12\x0045" in dead.raw  # the display text keeps the NUL too
    fixed = archive.gateway.replay(dead.id, adt("N1").encode())
    assert fixed.code == "AA"
    replayed = archive.log.get(dead.id)
    assert replayed is not None and replayed.status == "replayed"
    assert replayed.attempts == 2 and replayed.note == f"replayed as log entry {fixed.log_id}"


def test_a_failed_replay_updates_the_same_dead_letter(archive: Archive) -> None:
    submit = archive.gateway.submit

    def down(bundle: object, idempotency_key: str | None = None) -> dict[str, object]:
        raise OSError("store down")

    archive.gateway.submit = down
    first = archive.gateway.handle(adt("R1").encode())
    assert first.code == "AE"
    archive.gateway.submit = lambda bundle, idempotency_key=None: (_ for _ in ()).throw(
        TimeoutError("still down"))
    again = archive.gateway.replay(first.log_id)
    assert (again.code, again.log_id) == ("AE", first.log_id)
    [dead] = archive.log.entries()  # no second row
    assert dead.status == "dead" and dead.attempts == 2 and "TimeoutError" in dead.error
    archive.gateway.submit = submit
    done = archive.gateway.replay(first.log_id)
    assert done.code == "AA" and done.log_id != first.log_id
    assert archive.log.entries(status="dead") == []
    with pytest.raises(ValueError, match="replayed, not dead"):
        archive.gateway.replay(first.log_id)
    with pytest.raises(KeyError):
        archive.gateway.replay(999)


def test_a_replay_of_a_message_applied_meanwhile_resolves_the_dead_letter(
        archive: Archive) -> None:
    submit = archive.gateway.submit
    archive.gateway.submit = lambda bundle, idempotency_key=None: (_ for _ in ()).throw(
        OSError("down"))
    dead = archive.gateway.handle(adt("M1").encode())
    archive.gateway.submit = submit
    assert archive.gateway.handle(adt("M1").encode()).code == "AA"  # the sender sent it again
    outcome = archive.gateway.replay(dead.log_id)
    assert outcome.code == "AA" and outcome.duplicate
    entry = archive.log.get(dead.log_id)
    assert entry is not None and entry.status == "replayed"


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_a_log_table_of_an_earlier_release_gains_the_new_columns(database_url: str) -> None:
    db = open_database(database_url)
    key = "INTEGER PRIMARY KEY AUTOINCREMENT" if db.dialect == "sqlite" else "BIGSERIAL PRIMARY KEY"
    with db.writing() as cur:
        cur.execute(f"CREATE TABLE hl7_message_log (id {key}, received TEXT NOT NULL, "
                    "msg_key TEXT NOT NULL, outcome TEXT NOT NULL, status TEXT NOT NULL, "
                    "error TEXT NOT NULL, resources TEXT NOT NULL, unmapped TEXT NOT NULL, "
                    "raw TEXT NOT NULL, duplicate INTEGER NOT NULL)")
        cur.execute(db.sql("INSERT INTO hl7_message_log (received, msg_key, outcome, status, "
                           "error, resources, unmapped, raw, duplicate) VALUES ('2024', "
                           "'hl7:F|A|1', 'AE', 'dead', 'old', '[]', '[]', ?, 0)"),
                    (adt("1"),))
    message_log = SqlMessageLog(db)
    try:
        old = message_log.get(1)
        assert old is not None and (old.data, old.attempts, old.note) == (None, 1, "")
        assert old.message_bytes().startswith(b"MSH|")
        message_log.set_status(1, "discarded", "test")
        new_id = message_log.record(LogEntry(0, "2025", "k", "AR", "dead", "e", (), (),
                                             "\x00", data=b"\x00\xff"))
        assert message_log.get(new_id) == LogEntry(new_id, "2025", "k", "AR", "dead", "e",
                                                    (), (), "\x00\xff", data=b"\x00\xff")
        assert SqlMessageLog(db).get(1) is not None  # opened again: nothing left to add
    finally:
        message_log.close()

