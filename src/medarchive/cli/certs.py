"""``medarchive certs dev``: a development CA and a server certificate for HTTPS on this machine.

For trying ``medarchive serve --tls-cert/--tls-key`` locally, never for production (there, use
the hospital's PKI or an ACME CA: docs/operations.md). The CA is limited by RFC 5280 name
constraints to the names it was made for (localhost, 127.0.0.1, ::1 and any ``--host``), so
trusting it in a browser or the system store cannot lend it power over other sites even if its
key leaks. A second run reuses the CA in the folder (trust stays valid) and issues a fresh
server certificate. Keys are P-256 and written 0600.
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from medarchive.cli.context import console, fail

app = typer.Typer(help="TLS certificates (see docs/operations.md).", no_args_is_help=True)

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
CA_DAYS = 5 * 365
LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
Name = x509.DNSName | x509.IPAddress


def parse_host(text: str) -> Name:
    """A subject alternative name from a host name or an IP address (RFC 5280 §4.2.1.6);
    ValueError for anything else."""
    value = text.strip().lower()
    try:
        return x509.IPAddress(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        pass
    labels = value.removeprefix("*.").split(".")
    if not value or len(value) > 253 or not all(LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"not a host name or IP address: {text!r}")
    return x509.DNSName(value)


def permitted(name: Name) -> x509.GeneralName:
    """The name-constraint subtree that covers exactly ``name`` (an IP: that one address)."""
    if isinstance(name, x509.IPAddress):
        return x509.IPAddress(ipaddress.ip_network(name.value))
    return x509.DNSName(name.value.removeprefix("*."))


def covered(ca: x509.Certificate, name: Name) -> bool:
    """True when ``ca``'s name constraints (if any) allow it to sign for ``name``."""
    try:
        constraints = ca.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return True
    subtrees = constraints.permitted_subtrees or []
    if isinstance(name, x509.IPAddress):
        return any(isinstance(tree, x509.IPAddress)
                   and isinstance(tree.value, ipaddress.IPv4Network | ipaddress.IPv6Network)
                   and name.value in tree.value for tree in subtrees)
    host = name.value.removeprefix("*.")
    return any(isinstance(tree, x509.DNSName)
               and (host == tree.value or host.endswith("." + tree.value)) for tree in subtrees)


def make_ca(names: list[Name], now: datetime) -> tuple[ec.EllipticCurvePrivateKey,
                                                       x509.Certificate]:
    """A self-signed CA that may only sign for ``names`` (name constraints, path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "MedArchive"),
                         x509.NameAttribute(NameOID.COMMON_NAME,
                                            f"MedArchive development CA ({os.uname().nodename})")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                         crl_sign=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.NameConstraints([permitted(n) for n in names], None),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_server(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, names: list[Name],
                now: datetime, days: int) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A TLS server certificate for ``names`` signed by the CA (CA/B Forum profile shape)."""
    key = ec.generate_private_key(ec.SECP256R1())
    first = names[0]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(first.value))])
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(min(now + timedelta(days=days), ca.not_valid_after_utc))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False,
                                         crl_sign=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                ca_ski), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return key, cert


def write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """The key as unencrypted PKCS#8 PEM, readable by the owner only (0600 from creation)."""
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # an older file may have had wider permissions
        os.write(fd, data)
    finally:
        os.close(fd)


def write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def load_ca(folder: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None:
    """The CA already in ``folder``, or None when there is none."""
    cert_file, key_file = folder / "ca.pem", folder / "ca-key.pem"
    if not (cert_file.exists() and key_file.exists()):
        return None
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_file} is not a MedArchive development CA key")
    return key, x509.load_pem_x509_certificate(cert_file.read_bytes())


@app.command("dev")
def dev(
    out: Annotated[Path, typer.Option(help="Folder for ca.pem, ca-key.pem, server.pem and "
                                           "server-key.pem.")] = Path("var/tls"),
    host: Annotated[list[str] | None, typer.Option(
        help="Another name or IP address of this server (repeatable); localhost, 127.0.0.1 "
             "and ::1 are always included.")] = None,
    days: Annotated[int, typer.Option(help="Validity of the server certificate.")] = 397,
    new_ca: Annotated[bool, typer.Option(
        "--new-ca", help="Make a new CA even when the folder has one.")] = False,
) -> None:
    """A development CA and a server certificate signed by it (not for production)."""
    try:
        names: list[Name] = []
        for text in [*DEFAULT_HOSTS, *(host or [])]:
            name = parse_host(text)
            if name not in names:
                names.append(name)
        if days < 1:
            raise ValueError("--days must be at least 1")
        out.mkdir(parents=True, exist_ok=True, mode=0o700)
        now = datetime.now(UTC)
        found = None if new_ca else load_ca(out)
        if found is not None:
            missing = [str(n.value) for n in names if not covered(found[1], n)]
            if missing:
                raise ValueError(f"the CA in {out} may not sign for {', '.join(missing)}; "
                                 "run again with --new-ca (and trust the new ca.pem)")
            ca_key, ca = found
        else:
            ca_key, ca = make_ca(names, now)
            write_private(out / "ca-key.pem", ca_key)
            write_cert(out / "ca.pem", ca)
        key, cert = make_server(ca_key, ca, names, now, days)
        write_private(out / "server-key.pem", key)
        write_cert(out / "server.pem", cert)
    except (OSError, ValueError) as exc:
        fail(str(exc))
        return
    hosts = ", ".join(str(n.value) for n in names)
    state = "reused" if found is not None else "new"
    console.print(
        f"Development certificates in {out} (not for production)\n"
        f"  CA ({state}):   {out / 'ca.pem'}   (its key {out / 'ca-key.pem'} stays private)\n"
        f"  certificate: {out / 'server.pem'}   for {hosts}, valid until "
        f"{cert.not_valid_after_utc:%Y-%m-%d}\n"
        f"  key:         {out / 'server-key.pem'}   (mode 0600)\n\n"
        f"Serve:  medarchive serve --tls-cert {out / 'server.pem'} "
        f"--tls-key {out / 'server-key.pem'}\n"
        f"Try:    curl --cacert {out / 'ca.pem'} https://localhost:8080/fhir/metadata\n\n"
        f"To trust the CA (it can only sign for {hosts}):\n"
        f"  Debian/Ubuntu: sudo cp {out / 'ca.pem'} "
        "/usr/local/share/ca-certificates/medarchive-dev.crt && sudo update-ca-certificates\n"
        f"  macOS:   sudo security add-trusted-cert -d -r trustRoot "
        f"-k /Library/Keychains/System.keychain {out / 'ca.pem'}\n"
        "  Firefox: Settings > Privacy & Security > Certificates > View Certificates > "
        "Authorities > Import\n"
        f"  Python:  SSL_CERT_FILE={out / 'ca.pem'} (httpx), "
        f"REQUESTS_CA_BUNDLE={out / 'ca.pem'} (requests)",
        highlight=False, soft_wrap=True)
