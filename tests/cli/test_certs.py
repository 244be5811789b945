"""``medarchive certs dev``: a name-constrained development CA and a server certificate; keys
0600; a second run reuses the CA; OpenSSL verifies the certificate and enforces the CA's name
constraints; host names are parsed strictly (hypothesis)."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import Result
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import assume, given
from hypothesis import strategies as st
from typer.testing import CliRunner

from medarchive.cli.certs import covered, make_server, parse_host, write_cert, write_private
from medarchive.cli.main import app


def run(*args: str) -> Result:
    return CliRunner().invoke(app, ["certs", "dev", *args])


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_makes_ca_and_server_certificate(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    result = run("--out", str(out), "--host", "records.example.test", "--host", "10.1.2.3")
    assert result.exit_code == 0, result.output
    assert "--tls-cert" in result.output and "ca.pem" in result.output
    for key in ("ca-key.pem", "server-key.pem"):
        assert (out / key).stat().st_mode & 0o777 == 0o600
    ca, cert = load(out / "ca.pem"), load(out / "server.pem")
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "records.example.test"]
    assert names.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"),
        ipaddress.ip_address("10.1.2.3")]
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_second_run_reuses_the_ca(tmp_path: Path) -> None:
    assert run("--out", str(tmp_path)).exit_code == 0
    ca, first = (tmp_path / "ca.pem").read_bytes(), load(tmp_path / "server.pem")
    assert run("--out", str(tmp_path)).exit_code == 0
    assert (tmp_path / "ca.pem").read_bytes() == ca
    assert load(tmp_path / "server.pem").serial_number != first.serial_number
    refused = run("--out", str(tmp_path), "--host", "elsewhere.test")
    assert refused.exit_code == 1 and "--new-ca" in refused.output
    assert run("--out", str(tmp_path), "--host", "elsewhere.test", "--new-ca").exit_code == 0
    assert (tmp_path / "ca.pem").read_bytes() != ca


def test_bad_input_is_an_error(tmp_path: Path) -> None:
    result = run("--out", str(tmp_path), "--host", "not a host")
    assert result.exit_code == 1 and "not a host name" in result.output
    assert run("--out", str(tmp_path), "--days", "0").exit_code == 1


def accepts(ca: Path, cert: Path, key: Path, hostname: str) -> bool:
    """Whether OpenSSL, trusting ``ca``, accepts ``cert`` for ``hostname`` in a handshake."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(ca))
    left, right = socket.socketpair()

    def serve() -> None:
        try:
            with server.wrap_socket(right, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with client.wrap_socket(left, server_hostname=hostname):
            return True
    except ssl.SSLCertVerificationError:
        return False
    finally:
        thread.join(timeout=10)
        right.close()


def test_openssl_accepts_it_and_enforces_the_name_constraints(tmp_path: Path) -> None:
    assert run("--out", str(tmp_path)).exit_code == 0
    ca_file = tmp_path / "ca.pem"
    assert accepts(ca_file, tmp_path / "server.pem", tmp_path / "server-key.pem", "localhost")
    # A certificate for another site, signed with the (leaked) CA key: OpenSSL refuses it.
    from cryptography.hazmat.primitives import serialization
    ca_key = serialization.load_pem_private_key((tmp_path / "ca-key.pem").read_bytes(), None)
    rogue_name = x509.DNSName("bank.example.com")
    key, cert = make_server(ca_key, load(ca_file), [rogue_name],  # type: ignore[arg-type]
                            datetime.now(UTC), 30)
    write_cert(tmp_path / "rogue.pem", cert)
    write_private(tmp_path / "rogue-key.pem", key)
    assert not covered(load(ca_file), rogue_name)
    assert not accepts(ca_file, tmp_path / "rogue.pem", tmp_path / "rogue-key.pem",
                       "bank.example.com")


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


LABEL = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@given(st.lists(LABEL, min_size=1, max_size=5))
def test_host_names_parse(labels: list[str]) -> None:
    name = ".".join(labels)
    assume(not _is_address(name))  # e.g. 0.0.0.0: an IP address, tested below
    parsed = parse_host(name.upper())
    assert isinstance(parsed, x509.DNSName) and parsed.value == name


@given(st.ip_addresses())
def test_ip_addresses_parse(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    parsed = parse_host(str(address))
    assert isinstance(parsed, x509.IPAddress) and parsed.value == address


@given(st.text(max_size=80))
def test_anything_else_is_refused_or_a_valid_name(text: str) -> None:
    try:
        parsed = parse_host(text)
    except ValueError:
        return
    if isinstance(parsed, x509.DNSName):
        assert parsed.value == text.strip().lower()
        x509.SubjectAlternativeName([parsed])  # encodable (IA5 string)
    else:
        assert isinstance(parsed, x509.IPAddress)


@pytest.mark.parametrize("text", ["", " ", "-a.test", "a..test", "a_b.test", "ex ample",
                                  "é.test", "a" * 64 + ".test", "1.2.3.4:80"])
def test_refused_hosts(text: str) -> None:
    with pytest.raises(ValueError):
        parse_host(text)
