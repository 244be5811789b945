"""MLLP over TLS: a self-signed certificate made for the test, a real TLS client."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from mllp_builders import Archive, adt

from medarchive.mllp.framing import FrameDecoder, encode_frame
from medarchive.mllp.server import BackgroundListener, MllpServer, ServerOptions


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_tls_listener_acknowledges(archive: Archive, tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not available to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    listener = BackgroundListener(MllpServer(archive.gateway, ServerOptions(
        port=0, tls_cert=str(cert), tls_key=str(key))))
    port = listener.start()
    try:
        context = ssl.create_default_context(cafile=str(cert))
        context.check_hostname = False
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                context.wrap_socket(raw) as sock:
            sock.sendall(encode_frame(adt("TLS1")))
            frames: list[bytes] = []
            decoder = FrameDecoder()
            while not frames:
                frames = decoder.feed(sock.recv(65536))
        assert b"MSA|AA|TLS1" in frames[0]
        # plain TCP to a TLS listener gets no ACK
        with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
            plain.sendall(encode_frame(adt("PLAIN1")))
            assert b"MSA|AA" not in plain.recv(65536)
    finally:
        listener.stop()
    assert [e.key for e in archive.log.entries()] == ["hl7:CITYHOSP|HIS|TLS1"]
