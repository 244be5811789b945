"""Kill the listener mid-stream: every acknowledged message is stored, none is applied twice."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

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
