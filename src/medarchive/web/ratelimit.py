"""Token buckets for the HTTP edge's rate limits, in this process or shared through Redis.

A bucket holds up to ``burst`` tokens and gains ``per_second`` tokens a second; a request takes
one or, when the bucket is empty, is told how long until one is there (RFC 6585 §4, 429 with
Retry-After). The in-process ``MemoryBuckets`` are the default and the reference semantics;
with several server processes each keeps its own, so a client gets up to N times its rate.
``RedisBuckets`` (``rate_limit_url = redis://...``) keep the buckets in Redis, updated by one
Lua script (atomic, timed by the Redis server's clock), so every process and host shares them.
When Redis cannot be reached the process falls back to its own buckets and logs a warning:
a rate limit must not take the record offline.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Rate:
    """``per_second`` requests a second on average, at most ``burst`` at once."""

    per_second: float
    burst: float

    @classmethod
    def of(cls, per_second: int, burst_seconds: int) -> Rate | None:
        """The rate from settings (``burst_seconds`` worth of tokens); None when 0 (off)."""
        if per_second <= 0:
            return None
        return cls(float(per_second), float(max(per_second * max(burst_seconds, 1), 1)))


class Buckets(Protocol):
    async def take(self, key: str, rate: Rate) -> float:
        """Take a token from ``key``'s bucket: 0.0 when there was one, else the seconds
        until there will be one (nothing is taken then)."""
        ...

    async def close(self) -> None: ...


class MemoryBuckets:
    """Buckets in this process. At most ``max_keys`` are kept; the least recently used one
    goes first (it comes back full, which only ever favours that key)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 100_000) -> None:
        self.clock = clock
        self.max_keys = max_keys
        self._state: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take_now(self, key: str, rate: Rate) -> float:
        """``take`` without awaiting (also safe from several threads)."""
        with self._lock:
            now = self.clock()
            tokens, stamp = self._state.pop(key, (rate.burst, now))
            tokens = min(rate.burst, tokens + max(0.0, now - stamp) * rate.per_second)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / rate.per_second
            self._state[key] = (tokens, now)
            if len(self._state) > self.max_keys:
                self._state.popitem(last=False)
            return wait

    async def take(self, key: str, rate: Rate) -> float:
        return self.take_now(key, rate)

    async def close(self) -> None:
        self._state.clear()


# KEYS[1] = bucket; ARGV = per_second, burst. Returns the wait in seconds as a string (Lua
# numbers would be truncated to integers in the reply).
TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens = tonumber(state[1]) or burst
local stamp = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - stamp) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisBuckets:
    """Buckets in Redis at ``url``, shared by every process that uses the same ``prefix``."""

    def __init__(self, url: str, *, prefix: str = "medarchive:ratelimit:",
                 fallback: MemoryBuckets | None = None, timeout_s: float = 0.5) -> None:
        import redis.asyncio  # noqa: F401  (fail at start-up when the extra is missing)
        self.url = url
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.fallback = fallback or MemoryBuckets()
        self._client: Any = None
        self._script: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warned = -math.inf

    def _connect(self) -> Any:
        """The client for the running event loop (asyncio connections belong to one loop)."""
        import redis.asyncio
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = redis.asyncio.Redis.from_url(
                self.url, socket_timeout=self.timeout_s,
                socket_connect_timeout=self.timeout_s)
            self._script = self._client.register_script(TAKE)
            self._loop = loop
        return self._script

    async def take(self, key: str, rate: Rate) -> float:
        import redis.exceptions
        try:
            script = self._connect()
            reply = await script(keys=[self.prefix + key], args=[rate.per_second, rate.burst])
            return float(reply)
        except (redis.exceptions.RedisError, OSError) as exc:
            now = time.monotonic()
            if now - self._warned > 60:  # at most one warning a minute
                self._warned = now
                log.warning("rate limits: Redis at %s unusable (%s); limiting per process",
                            self.url, exc)
            return self.fallback.take_now(key, rate)

    async def close(self) -> None:
        if self._client is not None and self._loop is asyncio.get_running_loop():
            await self._client.aclose()
        self._client = None


def open_buckets(url: str, namespace: str = "") -> Buckets:
    """The buckets ``rate_limit_url`` names: empty for this process, redis:// (rediss://,
    unix://) for Redis, with keys under ``namespace`` (the server's public base URL, so two
    deployments sharing one Redis keep separate budgets)."""
    if not url:
        return MemoryBuckets()
    if url.split("://", 1)[0] in ("redis", "rediss", "unix"):
        return RedisBuckets(url, prefix=f"medarchive:ratelimit:{namespace}:")
    raise ValueError(f"setting rate_limit_url must be empty or redis://..., not {url!r}")
