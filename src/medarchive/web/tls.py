"""HTTPS for ``medarchive serve``: the server's TLS context and uvicorn's hook to use it.

uvicorn builds a bare ``ssl.SSLContext`` that accepts whatever protocol versions the system's
OpenSSL allows; this one follows the Mozilla "intermediate" profile (and BSI TR-02102-2): TLS
1.2 and 1.3 only, forward-secret AEAD cipher suites for TLS 1.2, no TLS compression (CRIME),
no renegotiation, server cipher preference, ALPN ``http/1.1``. The MLLP listener
(``mllp.server.tls_context``) uses this same context.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Any

# TLS 1.2 suites: ECDHE/DHE key exchange (forward secrecy) with AES-GCM or ChaCha20-Poly1305.
# TLS 1.3 suites are all AEAD and are left at OpenSSL's defaults.
CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
           "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
           "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
           "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384")


def server_context(cert: str, key: str = "") -> ssl.SSLContext:
    """A server context from a PEM certificate (chain) and its key (``key`` empty: the
    certificate file holds it). Raises ``ssl.SSLError``/``OSError`` for unusable files."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= (ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
                        | ssl.OP_SINGLE_ECDH_USE | ssl.OP_SINGLE_DH_USE
                        | ssl.OP_NO_RENEGOTIATION)
    context.set_ciphers(CIPHERS)
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(cert, key or None)
    return context


def uvicorn_context(config: Any, default: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """uvicorn's ``ssl_context_factory``: our context from the configured files. A plain
    module-level function, so worker processes (spawned, pickled config) can use it too."""
    return server_context(str(config.ssl_certfile), str(config.ssl_keyfile or ""))


def describe(context: ssl.SSLContext) -> str:
    """One line for the server banner: the protocol floor."""
    return f"TLS {context.minimum_version.name.removeprefix('TLSv').replace('_', '.')}+"
