"""The MLLP listener's TLS: the same hardened context as HTTPS (``web.tls.server_context``),
so a TLS 1.2 client offering only CBC suites is refused by the real listener, while an AEAD
client gets its ACK."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest

from medarchive.app import build_gateway
from medarchive.cli.certs import dev
from medarchive.mllp.framing import FrameDecoder, encode_frame
from medarchive.mllp.server import BackgroundListener, MllpServer, ServerOptions, tls_context
from medarchive.settings import Settings
from medarchive.web.tls import CIPHERS

CBC_ONLY = "ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:ECDHE-ECDSA-AES128-SHA256"
ADT = ("MSH|^~\\&|HIS|CITYHOSP|MEDARCHIVE|MA|20240101120000||ADT^A01^ADT_A01|{id}|P|2.5\r"
       "EVN|A01|20240101120000\r"
       "PID|1||MRN1^^^CITYHOSP^MR||Doe^Jane||19800101|F\r"
       "PV1|1|I|WARD1^101^A\r")


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``medarchive certs dev``: a CA and a server certificate for 127.0.0.1."""
    folder = tmp_path_factory.mktemp("mllp-tls")
    dev(out=folder, host=None, days=1, new_ca=True)
    return folder


def client(ca: Path, ciphers: str | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.check_hostname = False
    if ciphers is not None:
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(ciphers)
    return context


def test_context_offers_only_the_https_suites(certs: Path) -> None:
    context = tls_context(str(certs / "server.pem"), str(certs / "server-key.pem"))
    assert context is not None
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12 and tls12 <= set(CIPHERS.split(":"))
    assert all(c["aead"] and "CBC" not in c["description"] for c in context.get_ciphers())
    assert context.options & ssl.OP_NO_COMPRESSION and context.options & ssl.OP_NO_RENEGOTIATION
    assert tls_context("", "") is None


def test_listener_refuses_cbc_and_acknowledges_aead(certs: Path) -> None:
    gateway, services = build_gateway(Settings(database_url="memory://", auth="off"))
    listener = BackgroundListener(MllpServer(gateway, ServerOptions(
        port=0, tls_cert=str(certs / "server.pem"), tls_key=str(certs / "server-key.pem"))))
    port = listener.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                pytest.raises(ssl.SSLError):
            client(certs / "ca.pem", CBC_ONLY).wrap_socket(raw).do_handshake()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
                client(certs / "ca.pem", CIPHERS).wrap_socket(raw) as sock:
            cipher = sock.cipher()
            assert cipher is not None and ("GCM" in cipher[0] or "CHACHA20" in cipher[0])
            sock.sendall(encode_frame(ADT.format(id="TLS1").encode()))
            frames: list[bytes] = []
            decoder = FrameDecoder()
            while not frames:
                frames = decoder.feed(sock.recv(65536))
        assert b"MSA|AA|TLS1" in frames[0], frames
    finally:
        listener.stop()
        gateway.close()
        services.close()
