"""The MLLP listener end to end: python-hl7's client over a real socket, on every backend."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor

import pytest
from hl7.client import MLLPClient
from mllp_builders import Archive, adt

from medarchive.hl7v2 import parse_message
from medarchive.mllp.framing import FrameDecoder, encode_frame


def ack_of(raw: bytes) -> tuple[str, str, str]:
    """(MSA-1, MSA-2, ERR text) of a framed ACK."""
    frames = FrameDecoder().feed(raw)
    assert len(frames) == 1, raw
    message = parse_message(frames[0])
    msa = message.segment("MSA")
    assert msa is not None
    err = message.segment("ERR")
    return msa.value(1), msa.value(2), err.field_text(8) if err else ""


def test_message_is_acknowledged_after_it_is_stored(archive: Archive, listener: int) -> None:
    with MLLPClient("127.0.0.1", listener) as client:
        code, control, _ = ack_of(client.send_message(adt("M1")))
    assert (code, control) == ("AA", "M1")
    assert len(archive.versions("Patient")) == 1
    [entry] = archive.log.entries()
    assert entry.outcome == "AA" and entry.status == "done"
    assert any(r.startswith("Patient/") for r in entry.resources)


def test_duplicate_is_acknowledged_and_applied_once(archive: Archive, listener: int) -> None:
    with MLLPClient("127.0.0.1", listener) as client:
        first = ack_of(client.send_message(adt("DUP1", family="Doe")))
        # Same sender and control id, changed content: a redelivery must not be applied.
        second = ack_of(client.send_message(adt("DUP1", family="Changed")))
    assert first[0] == second[0] == "AA"
    assert len(archive.versions("Patient")) == 1
    entries = archive.log.entries()
    assert [e.duplicate for e in entries] == [False, True]


def test_same_control_id_from_another_sender_is_applied(archive: Archive,
                                                        listener: int) -> None:
    with MLLPClient("127.0.0.1", listener) as client:
        assert ack_of(client.send_message(adt("X1", app="HIS")))[0] == "AA"
        assert ack_of(client.send_message(adt("X1", app="LIS", family="Roe")))[0] == "AA"
    assert len(archive.versions("Patient")) == 2  # the second updates the matched patient


def test_malformed_message_gets_ar_with_err_and_nothing_written(archive: Archive,
                                                                listener: int) -> None:
    with MLLPClient("127.0.0.1", listener) as client:
        code, _, err = ack_of(client.send_message("this is not HL7\r"))
        unsupported = adt("U1").replace("ADT^A01^ADT_A01", "ZZZ^Z01")
        code2, control2, err2 = ack_of(client.send_message(unsupported))
    assert code == "AR" and err
    assert (code2, control2) == ("AR", "U1") and "unsupported" in err2
    assert archive.services.store.changes(0, 10) == []
    dead = archive.log.entries(status="dead")
    assert [e.outcome for e in dead] == ["AR", "AR"]


def test_dead_letter_can_be_fixed_and_replayed(archive: Archive, listener: int) -> None:
    bad = adt("R1").replace("ADT^A01^ADT_A01", "ADT^Z99")
    with MLLPClient("127.0.0.1", listener) as client:
        assert ack_of(client.send_message(bad))[0] == "AR"
    [dead] = archive.log.entries(status="dead")
    assert archive.gateway.replay(dead.id).code == "AR"  # unchanged, still refused
    outcome = archive.gateway.replay(dead.id, adt("R1").encode())
    assert outcome.code == "AA"
    assert archive.log.get(dead.id).status == "replayed"  # type: ignore[union-attr]
    assert len(archive.versions("Patient")) == 1


def test_enhanced_mode_sends_commit_ack(archive: Archive, listener: int) -> None:
    with MLLPClient("127.0.0.1", listener) as client:
        code, control, _ = ack_of(client.send_message(adt("E1", extra="|||AL|NE")))
    assert (code, control) == ("CA", "E1")
    assert len(archive.versions("Patient")) == 1


def test_enhanced_mode_never_means_no_ack(archive: Archive, listener: int) -> None:
    with socket.create_connection(("127.0.0.1", listener), timeout=5) as sock:
        sock.sendall(encode_frame(adt("N1", extra="|||NE|NE")) + encode_frame(adt("N2")))
        reply = sock.recv(65536)
    # Only N2 (original mode) is answered; N1 was applied silently as asked.
    assert ack_of(reply)[1] == "N2"
    assert [e.outcome for e in archive.log.entries()] == ["AA", "AA"]


def test_frames_split_across_reads_and_coalesced(archive: Archive, listener: int) -> None:
    stream = b"".join(encode_frame(adt(f"S{i}", mrn=f"P{i}")) for i in range(5))
    with socket.create_connection(("127.0.0.1", listener), timeout=10) as sock:
        for i in range(0, len(stream), 7):
            sock.sendall(stream[i:i + 7])
        decoder, acks = FrameDecoder(), []
        while len(acks) < 5:
            acks += decoder.feed(sock.recv(65536))
    assert [parse_message(a).segment("MSA").value(2) for a in acks] == [  # type: ignore[union-attr]
        f"S{i}" for i in range(5)]


def test_oversized_message_is_refused(archive: Archive, listener: int) -> None:
    huge = adt("BIG").replace("WARD1", "W" * 70_000)
    with MLLPClient("127.0.0.1", listener) as client:
        code, _, err = ack_of(client.send_message(huge))
    assert code == "AR" and "larger" in err
    assert archive.services.store.changes(0, 10) == []


def test_many_connections_each_patient_in_order(archive: Archive, listener: int) -> None:
    def send(conn: int) -> list[str]:
        with MLLPClient("127.0.0.1", listener) as client:
            return [ack_of(client.send_message(
                adt(f"C{conn}-{i}", mrn=f"MRN{conn}", family=f"Fam{i}")))[0] for i in range(4)]

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(send, range(6)))
    assert all(codes == ["AA"] * 4 for codes in results)
    patients = archive.versions("Patient")
    assert len({pid for pid, _ in patients}) == 6
    # the last version of each patient carries the last name sent on its connection
    for version in archive.services.store.changes(0, 1000):
        if version.resource_type == "Patient":
            latest = version.resource()
    assert latest["name"][0]["family"] == "Fam3"


@pytest.mark.parametrize("database_url", ["memory"], indirect=True)
def test_connection_closes_without_ack_when_nothing_could_be_committed(
        archive: Archive, listener: int) -> None:
    def broken(entry: object) -> int:
        raise OSError("database gone")

    archive.log.record = broken  # type: ignore[method-assign]
    with socket.create_connection(("127.0.0.1", listener), timeout=10) as sock:
        sock.sendall(encode_frame(adt("Z1")))
        assert sock.recv(65536) == b""  # closed, no ACK: the sender will resend
