"""Who may send: the ``mllp_allowed_senders`` allow-list and mutual TLS, over real sockets."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mllp_builders import Archive, adt, exchange
from typer.testing import CliRunner

from medarchive.cli.certs import write_cert, write_private
from medarchive.cli.main import app
from medarchive.hl7v2 import parse_message
from medarchive.mllp.senders import parse_senders
from medarchive.mllp.server import BackgroundListener, MllpServer, ServerOptions, tls_context


def send(sock: socket.socket, text: str) -> str:
    return exchange(sock, text).decode()


@pytest.fixture
def serving(archive: Archive, request: pytest.FixtureRequest) -> Iterator[int]:
    """A listener in front of ``archive`` allowing the senders of the test's parameter."""
    running = BackgroundListener(MllpServer(archive.gateway, ServerOptions(
        port=0, senders=parse_senders(request.param))))
    yield running.start()
    running.stop()


@pytest.mark.parametrize("serving", ["HIS^CITYHOSP, LIS^*"], indirect=True)
def test_only_listed_applications_and_facilities_are_applied(archive: Archive,
                                                            serving: int) -> None:
    with socket.create_connection(("127.0.0.1", serving), timeout=30) as sock:
        assert "MSA|AA|S1" in send(sock, adt("S1", mrn="P1"))
        assert "MSA|AA|S2" in send(sock, adt("S2", mrn="P2", app="LIS"))
        refused = parse_message(send(sock, adt("S3", mrn="P3", app="ROGUE")))
    msa, err = refused.segment("MSA"), refused.segment("ERR")
    assert msa is not None and msa.value(1) == "AR"
    assert err is not None and err.value(3) == "207" and "ROGUE^CITYHOSP" in err.value(8)
    stored = {v.resource()["identifier"][0]["value"]
              for v in archive.services.store.changes(0, 100) if v.resource_type == "Patient"}
    assert stored == {"P1", "P2"}
    [dead] = archive.log.entries(status="dead")
    assert dead.key == "hl7:CITYHOSP|ROGUE|S3" and "not allowed" in dead.error


@pytest.mark.parametrize("serving", ["10.0.0.0/8, HIS^CITYHOSP"], indirect=True)
def test_a_sender_outside_the_listed_networks_is_refused(archive: Archive,
                                                         serving: int) -> None:
    with socket.create_connection(("127.0.0.1", serving), timeout=30) as sock:
        answer = send(sock, adt("N1"))
    assert "MSA|AR|N1" in answer and "127.0.0.1 is not allowed" in answer
    assert archive.services.store.changes(0, 10) == []
    assert [e.status for e in archive.log.entries()] == ["dead"]


@pytest.mark.parametrize("serving", ["127.0.0.0/8"], indirect=True)
def test_a_sender_inside_the_listed_networks_is_applied(archive: Archive, serving: int) -> None:
    with socket.create_connection(("127.0.0.1", serving), timeout=30) as sock:
        assert "MSA|AA|L1" in send(sock, adt("L1"))


@pytest.mark.parametrize("text", ["HIS", "HIS^", "^FAC", "A^B^C", "300.1.1.0/24", "host"])
def test_malformed_allow_list_entries_are_named(text: str) -> None:
    with pytest.raises(ValueError, match="mllp_allowed_senders"):
        parse_senders(f"HIS^CITYHOSP, {text}")


_NAME = st.text(alphabet=st.characters(blacklist_characters="^,", blacklist_categories=(
    "Cs", "Zs", "Cc")), min_size=1, max_size=10)


@given(st.lists(st.tuples(_NAME, _NAME), max_size=5))
def test_listed_pairs_are_read_back(pairs: list[tuple[str, str]]) -> None:
    assert parse_senders(",".join(f"{a}^{f}" for a, f in pairs)).pairs == set(pairs)


def client_pki(folder: Path) -> tuple[Path, Path, Path]:
    """A client CA (ca), and a client certificate (clientAuth) it signed: files
    clients-ca.pem, client.pem, client-key.pem."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test interface CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "HIS")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "clients-ca.pem", folder / "client.pem", folder / "client-key.pem"
    write_cert(paths[0], ca)
    write_cert(paths[1], cert)
    write_private(paths[2], key)
    return paths


@pytest.mark.parametrize("database_url", ["sqlite", "postgresql"], indirect=True)
def test_mutual_tls_requires_a_client_certificate_of_the_listed_cas(archive: Archive,
                                                                    tmp_path: Path) -> None:
    made = CliRunner().invoke(app, ["certs", "dev", "--out", str(tmp_path)])
    assert made.exit_code == 0, made.output
    clients_ca, client_cert, client_key = client_pki(tmp_path)
    listener = BackgroundListener(MllpServer(archive.gateway, ServerOptions(
        port=0, tls_cert=str(tmp_path / "server.pem"), tls_key=str(tmp_path / "server-key.pem"),
        tls_ca=str(clients_ca))))
    port = listener.start()
    try:
        def connect(with_certificate: bool) -> ssl.SSLSocket:
            context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
            if with_certificate:
                context.load_cert_chain(str(client_cert), str(client_key))
            raw = socket.create_connection(("127.0.0.1", port), timeout=30)
            return context.wrap_socket(raw, server_hostname="127.0.0.1")

        with connect(True) as sock:
            assert "MSA|AA|M1" in send(sock, adt("M1"))
        # refused in the handshake (TLS 1.3: at the client's first read)
        with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)), \
                connect(False) as sock:
            send(sock, adt("M2"))
        self_signed = tmp_path / "other"
        self_signed.mkdir()
        _, other_cert, other_key = client_pki(self_signed)  # a CA the listener does not know
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        context.load_cert_chain(str(other_cert), str(other_key))
        with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)), \
                socket.create_connection(("127.0.0.1", port), timeout=30) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            send(sock, adt("M3"))
    finally:
        listener.stop()
    assert [e.key for e in archive.log.entries()] == ["hl7:CITYHOSP|HIS|M1"]


def test_client_certificates_need_a_server_certificate() -> None:
    with pytest.raises(ValueError, match="needs mllp_tls_cert"):
        tls_context("", "", "clients-ca.pem")
