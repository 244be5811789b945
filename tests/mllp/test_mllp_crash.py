"""Kill the listener mid-stream: every acknowledged message is stored, none is applied twice."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mllp_builders import adt

from medarchive.app import build_encryption
from medarchive.fhir.spec import load_spec
from medarchive.mllp.framing import FrameDecoder, encode_frame
from medarchive.settings import Settings
from medarchive.store import open_store

HERE = Path(__file__).resolve().parent
COUNT = 60


def start(url: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, str(HERE / "mllp_process.py"), url],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


def send_all(port: int, first: int, acked: list[int], stop_after: int | None) -> None:
    """Send messages first..COUNT-1 one at a time, recording each AA; return early (without
    waiting) once ``stop_after`` have been acknowledged in this call."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        decoder = FrameDecoder()
        for i in range(first, COUNT):
            sock.sendall(encode_frame(adt(f"K{i}", mrn=f"CRASH{i}")))
            frames: list[bytes] = []
            while not frames:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                frames = decoder.feed(chunk)
            if b"MSA|AA" in frames[0]:
                acked.append(i)
            if stop_after is not None and len(acked) >= stop_after:
                # the next message is in flight when the server dies
                sock.sendall(encode_frame(adt(f"K{i + 1}", mrn=f"CRASH{i + 1}")))
                return


def stored_mrns(url: str) -> list[str]:
    store = open_store(url, None,  # type: ignore[arg-type]
                       encryption=build_encryption(Settings(database_url=url), load_spec()))
    try:
        return [v.resource()["identifier"][0]["value"] for v in store.changes(0, 100_000)
                if v.resource_type == "Patient"]
    finally:
        store.close()


def test_kill_mid_stream_loses_no_acknowledged_message(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    proc, port = start(url)
    acked: list[int] = []
    try:
        send_all(port, 0, acked, stop_after=25)
        time.sleep(0.01)
        kill(proc)
        assert set(acked) <= {int(m[5:]) for m in stored_mrns(url)}
        # the sender reconnects and sends again everything after its last ACK, plus the
        # last acknowledged one (as a sender unsure of its ACK would)
        proc, port = start(url)
        retry: list[int] = []
        send_all(port, acked[-1], retry, stop_after=None)
        assert retry == list(range(acked[-1], COUNT))
    finally:
        kill(proc)
    mrns = stored_mrns(url)
    assert sorted(mrns) == sorted(f"CRASH{i}" for i in range(COUNT))  # all, none twice


SENDERS, PER_SENDER = 6, 20


def send_from(port: int, sender: int, first: int, acked: list[int],
              total: list[int], stop_at: int | None) -> None:
    """One sender's messages first..PER_SENDER-1 on its own connection, each after the ACK of
    the one before; stops when the listener dies (or ``total`` reaches ``stop_at``)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            decoder = FrameDecoder()
            for i in range(first, PER_SENDER):
                if stop_at is not None and len(total) >= stop_at:
                    return
                sock.sendall(encode_frame(adt(f"G{sender}-{i}", mrn=f"CRASH{sender}x{i}")))
                frames: list[bytes] = []
                while not frames:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    frames = decoder.feed(chunk)
                if b"MSA|AA" in frames[0]:
                    acked.append(i)
                    total.append(1)
    except OSError:  # the listener was killed under this sender
        return


def run_senders(port: int, firsts: list[int], acked: list[list[int]],
                stop_at: int | None) -> None:
    total: list[int] = []
    threads = [threading.Thread(target=send_from,
                                args=(port, s, firsts[s], acked[s], total, stop_at))
               for s in range(SENDERS)]
    for thread in threads:
        thread.start()
    if stop_at is not None:
        while len(total) < stop_at and any(t.is_alive() for t in threads):
            time.sleep(0.001)
        return
    for thread in threads:
        thread.join(120)


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_kill_during_group_commits_loses_no_acknowledged_message(database_url: str) -> None:
    """Six senders at once, so messages are committed in groups: killed mid-stream, every
    acknowledged message is stored; after the senders resend from their last ACK, every
    message is stored exactly once (one Patient version each)."""
    proc, port = start(database_url)
    acked: list[list[int]] = [[] for _ in range(SENDERS)]
    try:
        run_senders(port, [0] * SENDERS, acked, stop_at=40)
        kill(proc)
        stored = set(stored_mrns(database_url))
        assert {f"CRASH{s}x{i}" for s in range(SENDERS) for i in acked[s]} <= stored
        proc, port = start(database_url)
        again: list[list[int]] = [[] for _ in range(SENDERS)]
        run_senders(port, [a[-1] if a else 0 for a in acked], again, stop_at=None)
        for s in range(SENDERS):
            first = acked[s][-1] if acked[s] else 0
            assert again[s] == list(range(first, PER_SENDER))
    finally:
        kill(proc)
    mrns = stored_mrns(database_url)
    assert sorted(mrns) == sorted(f"CRASH{s}x{i}" for s in range(SENDERS)
                                  for i in range(PER_SENDER))
