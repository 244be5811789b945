"""HashiCorp Vault's transit engine as the key-encryption-key manager (production option).

The KEK lives in Vault and never leaves it: data keys are sent to ``transit/encrypt/<key>`` and
come back as ``vault:vN:...`` ciphertext, which is what the ``data_key`` table stores; the
``vault:vN`` prefix is the KEK version. Rotation is ``transit/keys/<key>/rotate``; retiring old
versions raises ``min_decryption_version`` and trims them, so every older copy of a wrapped key
stops unwrapping. The data key's id and owner go along as AES-GCM associated data.

Authentication follows hvac: the token comes from ``VAULT_TOKEN`` (or ``~/.vault-token``); the
address from the ``encryption_vault_url`` setting (else ``VAULT_ADDR``). Tested against a real
OpenBao dev server (the open-source fork of Vault with the same transit API), not against
HashiCorp Vault itself; see docs/encryption.md.
"""

from __future__ import annotations

import base64
import threading
from typing import Any

from medarchive.crypto.envelope import KeyUnavailable


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class VaultTransit:
    """KEK versions of one transit key (``aes256-gcm96``), created on first use."""

    name = "vault"

    def __init__(self, url: str | None, *, key: str = "medarchive", mount: str = "transit",
                 token: str | None = None, client: Any = None) -> None:
        if client is None:
            try:
                import hvac
            except ImportError as exc:  # pragma: no cover - depends on the install
                raise KeyUnavailable("the vault key manager needs hvac: pip install "
                                     "'medarchive[vault]'") from exc
            client = hvac.Client(url=url or None, token=token)
        self.client = client
        self.key = key
        self.mount = mount
        self._lock = threading.Lock()
        self._ensure()

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        try:
            return fn(name=self.key, mount_point=self.mount, **kwargs)
        except Exception as exc:  # hvac raises its own hierarchy and requests' errors
            raise KeyUnavailable(f"vault transit {what} on key {self.key!r} failed: "
                                 f"{type(exc).__name__}: {exc}".strip()) from None

    def _ensure(self) -> None:
        transit = self.client.secrets.transit
        try:
            transit.read_key(name=self.key, mount_point=self.mount)
        except Exception:
            self._call("create", transit.create_key, key_type="aes256-gcm96")

    def _info(self) -> dict[str, Any]:
        data: dict[str, Any] = self._call("read", self.client.secrets.transit.read_key)["data"]
        return data

    def _configure(self, name: str, mount_point: str, **settings: int) -> Any:
        """``POST transit/keys/:name/config``, sent as is: hvac refuses a minimum encryption
        version equal to the minimum decryption version, which Vault accepts (and trimming
        needs)."""
        return self.client.adapter.post(f"/v1/{mount_point}/keys/{name}/config", json=settings)

    def current(self) -> str:
        return f"vault:v{self._info()['latest_version']}"

    def versions(self) -> list[str]:
        info = self._info()
        return [f"vault:v{n}" for n in sorted(int(v) for v in info["keys"])
                if n >= int(info.get("min_decryption_version") or 1)]

    def wrap(self, key: bytes, context: bytes) -> tuple[str, bytes]:
        reply = self._call("encrypt", self.client.secrets.transit.encrypt_data,
                           plaintext=_b64(key), associated_data=_b64(context))
        text: str = reply["data"]["ciphertext"]
        return text.rsplit(":", 1)[0], text.encode()

    def unwrap(self, kek: str, wrapped: bytes, context: bytes) -> bytes:
        reply = self._call("decrypt", self.client.secrets.transit.decrypt_data,
                           ciphertext=wrapped.decode(), associated_data=_b64(context))
        return base64.b64decode(reply["data"]["plaintext"])

    def rewrap(self, kek: str, wrapped: bytes, context: bytes) -> tuple[str, bytes]:
        return self.wrap(self.unwrap(kek, wrapped, context), context)

    def rotate(self) -> str:
        with self._lock:
            self._call("rotate", self.client.secrets.transit.rotate_key)
            return self.current()

    def retire(self, keep: set[str]) -> list[str]:
        with self._lock:
            info = self._info()
            latest = int(info["latest_version"])
            wanted = [int(k.rpartition("v")[2]) for k in keep if k.startswith("vault:v")]
            floor = min([*wanted, latest])
            old = [v for v in self.versions() if int(v.rpartition("v")[2]) < floor]
            if old:
                self._call("configure", self._configure, min_decryption_version=floor,
                           min_encryption_version=latest)
                self._call("trim", self.client.secrets.transit.trim_key, min_version=floor)
            return old
