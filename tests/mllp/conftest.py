"""Fixtures for the MLLP tests: the archive on each backend, and a live listener on 127.0.0.1.

The listener runs its own asyncio loop in a background thread (``BackgroundListener``), bound
to port 0, so tests talk to it over a real socket with python-hl7's ``MLLPClient`` exactly as a
hospital system would.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import count

import pytest
from mllp_builders import Archive

from medarchive.app import build_gateway
from medarchive.mllp.server import BackgroundListener, MllpServer, ServerOptions
from medarchive.settings import Settings


@pytest.fixture
def archive(database_url: str) -> Iterator[Archive]:
    gateway, services = build_gateway(Settings(database_url=database_url, auth="off"))
    ticks = count()
    gateway.now = lambda: datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    gateway.control_id = lambda: f"ACK{next(ticks)}"
    yield Archive(services, gateway.log, gateway)
    gateway.close()
    services.close()


@pytest.fixture
def listener(archive: Archive) -> Iterator[int]:
    """The port of a running MLLP server in front of ``archive``."""
    running = BackgroundListener(MllpServer(archive.gateway,
                                            ServerOptions(port=0, max_message_bytes=64 * 1024)))
    yield running.start()
    running.stop()
