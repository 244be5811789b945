"""HTTPS serving: the TLS context's profile, and the real ``medarchive serve --tls-cert
--tls-key`` in a subprocess, reached with httpx verifying against a development CA; TLS 1.0
and 1.1 clients are refused (a control server shows the same client does speak TLS 1.1)."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from medarchive.cli.certs import make_ca, make_server, parse_host, write_cert, write_private
from medarchive.cli.main import app
from medarchive.web.tls import server_context

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tls")
    names = [parse_host(h) for h in ("localhost", "127.0.0.1", "::1")]
    now = datetime.now(UTC)
    ca_key, ca = make_ca(names, now)
    key, cert = make_server(ca_key, ca, names, now, 30)
    write_cert(folder / "ca.pem", ca)
    write_cert(folder / "server.pem", cert)
    write_private(folder / "server-key.pem", key)
    return folder


def trusting(ca: Path, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client context trusting only ``ca``, optionally pinned to one protocol version
    (lowest security level, so the client itself never declines an old version)."""
    context = ssl.create_default_context(cafile=str(ca))
    if version is not None:
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        with warnings.catch_warnings():  # setting TLS 1.0/1.1 is deprecated: that's the point
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = context.maximum_version = version
    return context


def handshake(port: int, context: ssl.SSLContext) -> str:
    """The negotiated protocol, or raises the handshake's error."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname="localhost") as tls:
        return str(tls.version())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of the served database."""
    return tmp_path_factory.mktemp("serve")


@pytest.fixture(scope="module")
def server(certs: Path, served: Path) -> Iterator[int]:
    """``medarchive serve`` over TLS on a free port (SQLite, security on)."""
    folder = served
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDARCHIVE_")}
    env.update({"MEDARCHIVE_DATABASE_URL": f"sqlite:///{folder / 'db.sqlite'}",
                "MEDARCHIVE_ENCRYPTION_KEY_FILE": str(folder / "kek"),
                "MEDARCHIVE_LOG_LEVEL": "warning"})
    log = (folder / "serve.log").open("wb")
    process = subprocess.Popen(
        [str(BIN / "medarchive"), "serve", "--port", str(port),
         "--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server-key.pem")],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        context = trusting(certs / "ca.pem")
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, (folder / "serve.log").read_text()
            try:
                httpx.get(f"https://localhost:{port}/fhir/metadata", verify=context, timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the TLS server did not come up"
                time.sleep(0.2)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def test_context_profile(certs: Path) -> None:
    context = server_context(str(certs / "server.pem"), str(certs / "server-key.pem"))
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION
    tls12 = [c for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 and all(c["aead"] and c["kea"] in ("kx-ecdhe", "kx-dhe") for c in tls12)


def test_https_with_the_dev_ca(server: int, certs: Path) -> None:
    context = trusting(certs / "ca.pem")
    response = httpx.get(f"https://localhost:{server}/fhir/metadata", verify=context)
    assert response.status_code == 200
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert response.json()["implementation"]["url"].startswith("https://")
    refused = httpx.get(f"https://127.0.0.1:{server}/fhir/Patient", verify=context)
    assert refused.status_code == 401 and "strict-transport-security" in refused.headers


def test_refusals_are_audited_with_the_proxied_address(server: int, certs: Path,
                                                       served: Path) -> None:
    context = trusting(certs / "ca.pem")
    answer = httpx.get(f"https://localhost:{server}/fhir/Observation", verify=context,
                       headers={"X-Forwarded-For": "203.0.113.9"})  # from a trusted proxy
    assert answer.status_code == 401

    def refused() -> list[str]:
        """Addresses of the refusal events for that request (written after the answer)."""
        db = sqlite3.connect(served / "db.sqlite")
        try:
            bodies = [json.loads(row[0]) for row in db.execute("SELECT body FROM audit_event")]
        finally:
            db.close()
        return [b["agent"][0]["network"]["address"] for b in bodies
                if b.get("entity", [{}])[0].get("description") == "GET /fhir/Observation"]

    deadline = time.monotonic() + 10
    while not refused() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert refused() == ["203.0.113.9"]


def test_ui_session_cookie_is_secure_over_tls(server: int, certs: Path, served: Path) -> None:
    """Over TLS the session (and CSRF) cookies carry ``Secure``: a browser never sends them
    over plain HTTP (tests/web/ui/test_ui_sessions.py: not over plain HTTP)."""
    import re
    password = "a long enough passphrase"
    added = CliRunner().invoke(app, ["--database-url", f"sqlite:///{served / 'db.sqlite'}",
                                     "users", "add", "tlsdoc", "--role", "physician",
                                     "--password-stdin"], input=password + "\n")
    assert added.exit_code == 0, added.output
    with httpx.Client(base_url=f"https://localhost:{server}",
                      verify=trusting(certs / "ca.pem"), timeout=60) as browser:
        page = browser.get("/login")
        assert "secure" in page.headers["set-cookie"].lower()  # the CSRF cookie
        found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert found
        login = browser.post("/login", data={"username": "tlsdoc", "password": password,
                                             "csrf_token": found.group(1)})
    assert login.status_code == 303, login.text
    cookie = next(c for c in login.headers.get_list("set-cookie") if c.startswith("ma_session="))
    attributes = [a.strip().lower() for a in cookie.split(";")]
    assert "secure" in attributes and "httponly" in attributes and "samesite=strict" in attributes


def test_certificate_is_really_checked(server: int, certs: Path) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://localhost:{server}/fhir/metadata",
                  verify=ssl.create_default_context())  # the system's CAs, not ours


def test_no_plain_http_on_the_tls_port(server: int) -> None:
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{server}/fhir/metadata", timeout=5)


def test_tls12_and_13_accepted(server: int, certs: Path) -> None:
    assert handshake(server, trusting(certs / "ca.pem", ssl.TLSVersion.TLSv1_2)) == "TLSv1.2"
    assert handshake(server, trusting(certs / "ca.pem", ssl.TLSVersion.TLSv1_3)) == "TLSv1.3"


@contextlib.contextmanager
def permissive_server(certs: Path) -> Iterator[int]:
    """A bare TLS server that accepts TLS 1.1: the control for the refusal test."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1_1
    context.load_cert_chain(certs / "server.pem", certs / "server-key.pem")
    listener = socket.create_server(("127.0.0.1", 0))

    def serve_one() -> None:
        conn, _ = listener.accept()
        with contextlib.suppress(OSError), context.wrap_socket(conn, server_side=True):
            pass

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        thread.join(timeout=10)
        listener.close()


def test_tls11_refused(server: int, certs: Path) -> None:
    client = trusting(certs / "ca.pem", ssl.TLSVersion.TLSv1_1)
    with permissive_server(certs) as control:  # the client can do TLS 1.1 ...
        assert handshake(control, client) == "TLSv1.1"
    with pytest.raises(ssl.SSLError):  # ... but our server will not
        handshake(server, client)
    with pytest.raises(ssl.SSLError):
        handshake(server, trusting(certs / "ca.pem", ssl.TLSVersion.TLSv1))


@pytest.mark.parametrize(("args", "message"), [
    (["--tls-cert", "/nonexistent/server.pem"], "No such file"),
    (["--tls-key", "/tmp/key.pem"], "tls_key is set but tls_cert is not"),
])
def test_serve_refuses_unusable_tls_settings(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["--database-url", "memory://", "serve", *args])
    assert result.exit_code == 2 and message in result.output


def test_serve_refuses_a_key_that_does_not_match(certs: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    assert CliRunner().invoke(app, ["certs", "dev", "--out", str(other)]).exit_code == 0
    result = CliRunner().invoke(app, ["--database-url", "memory://", "serve", "--tls-cert",
                                      str(certs / "server.pem"), "--tls-key",
                                      str(other / "server-key.pem")])
    assert result.exit_code == 2 and "error" in result.output
