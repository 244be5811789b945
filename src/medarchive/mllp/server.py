"""The asyncio MLLP listener: many concurrent connections, optional TLS, ACK after commit.

Each connection is read by an incremental ``FrameDecoder``; each message is handed to the
``Gateway`` in a worker thread (the store is blocking) and its ACK is written back on the same
connection before the next message of that connection is read, so one sender's messages are
applied in the order sent (HL7 v2.8 Appendix C §C.4: the sender waits for the ACK). A frame
over the size limit closes the connection after an AR, since the rest of the stream cannot be
trusted to be in step.

Who may send: with ``mllp_tls_ca`` the TLS handshake requires a client certificate signed by
those CAs (mutual TLS; a sender without one never gets to send a byte), and
``mllp_allowed_senders`` (``mllp.senders``) refuses, with AR and a dead letter, messages from
other networks or naming other sending applications/facilities.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from medarchive.hl7v2 import Hl7Error, Message, build_nak_for_unparseable
from medarchive.mllp.framing import FrameDecoder, FrameError, encode_frame
from medarchive.mllp.gateway import Admit, Gateway, new_control_id
from medarchive.mllp.senders import Senders, parse_senders
from medarchive.settings import Settings
from medarchive.web.tls import server_context

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerOptions:
    """Listener settings (docs/settings.md: mllp_host, mllp_port, mllp_max_message_bytes,
    mllp_tls_cert, mllp_tls_key, mllp_tls_ca, mllp_threads, mllp_allowed_senders)."""

    host: str = "127.0.0.1"
    port: int = 2575
    max_message_bytes: int = 1024 * 1024
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    threads: int = 8
    senders: Senders = field(default_factory=Senders)


def tls_context(cert: str, key: str, ca: str = "") -> ssl.SSLContext | None:
    """The server TLS context from PEM files (the same hardened one as HTTPS,
    ``web.tls.server_context``: TLS 1.2+, AEAD suites only), or None without a certificate.
    With ``ca``, mutual TLS: the client must present a certificate those CAs signed
    (``CERT_REQUIRED``). Raises ValueError for a CA without a certificate, and
    ``ssl.SSLError``/``OSError`` for unusable files."""
    if not cert:
        if ca:
            raise ValueError("mllp_tls_ca (client certificates) needs mllp_tls_cert")
        return None
    context = server_context(cert, key)
    if ca:
        context.load_verify_locations(cafile=ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class MllpServer:
    """Serves ``gateway`` over MLLP (HL7 v2.8 Appendix C, MLLP release 2)."""

    def __init__(self, gateway: Gateway, options: ServerOptions) -> None:
        self.gateway = gateway
        self.options = options
        self.executor = ThreadPoolExecutor(max_workers=max(options.threads, 1),
                                           thread_name_prefix="mllp")
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        """Start listening; returns the bound port (useful with port 0)."""
        self._server = await asyncio.start_server(
            self._connection, self.options.host, self.options.port,
            ssl=tls_context(self.options.tls_cert, self.options.tls_key, self.options.tls_ca),
            limit=64 * 1024)
        port: int = self._server.sockets[0].getsockname()[1]
        log.info("MLLP listener on %s:%s", self.options.host, port)
        return port

    async def serve_forever(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        async with self._server:
            await self._server.serve_forever()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        self.executor.shutdown(wait=True)

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        admit = self._admission(peer[0] if isinstance(peer, tuple) else None)
        decoder = FrameDecoder(max_size=self.options.max_message_bytes)
        loop = asyncio.get_running_loop()
        try:
            while True:
                chunk = await reader.read(65536)
                if not chunk:
                    break
                try:
                    frames = decoder.feed(chunk)
                except FrameError as exc:
                    nak = build_nak_for_unparseable(b"", str(exc), now=datetime.now(UTC),
                                                    control_id=new_control_id(), hl7_code=100)
                    writer.write(encode_frame(nak))
                    await writer.drain()
                    break
                for frame in frames:
                    outcome = await loop.run_in_executor(self.executor, self.gateway.handle,
                                                         frame, admit)
                    if outcome.log_id == 0:
                        log.warning("MLLP connection from %s closed without ACK: the message "
                                    "could not be committed; the sender will resend", peer)
                        return
                    if outcome.ack is not None:
                        writer.write(encode_frame(outcome.ack_bytes()))
                        await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError) as exc:
            log.info("MLLP connection from %s ended: %s", peer, exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError):
                await writer.wait_closed()


    def _admission(self, peer: str | None) -> Admit | None:
        """The sender check of a connection from ``peer`` (None: everyone is allowed)."""
        senders = self.options.senders
        if not senders.pairs and not senders.networks:
            return None

        def admit(message: Message) -> Hl7Error | None:
            refused = senders.refusal(message, peer)
            if refused is not None:
                log.warning("MLLP message from %s refused: %s", peer, refused.user_message)
            return refused
        return admit


def options_from_settings(settings: Settings) -> ServerOptions:
    """The listener options named in ``settings`` (docs/settings.md, mllp_*); raises
    ValueError for a malformed ``mllp_allowed_senders``."""
    return ServerOptions(host=settings.mllp_host, port=settings.mllp_port,
                         max_message_bytes=settings.mllp_max_message_bytes,
                         tls_cert=settings.mllp_tls_cert, tls_key=settings.mllp_tls_key,
                         tls_ca=settings.mllp_tls_ca, threads=settings.mllp_threads,
                         senders=parse_senders(settings.mllp_allowed_senders))


class BackgroundListener:
    """An ``MllpServer`` on its own event loop in a daemon thread, beside the HTTP server."""

    def __init__(self, server: MllpServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="mllp-loop",
                                       daemon=True)

    def start(self) -> int:
        """Bind and start serving; raises OSError when the port cannot be bound (the loop is
        closed then)."""
        try:
            port = self.loop.run_until_complete(self.server.start())
        except BaseException:
            self.server.executor.shutdown(wait=False)
            self.loop.close()
            raise
        self.thread.start()
        return port

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()
