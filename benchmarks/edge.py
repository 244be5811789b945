"""What the HTTP edge (web/edge.py) costs per request: size checks, the per-address bucket and
the per-client bucket with token identification, in process and with Redis.

Calls a trivial ASGI app directly (no sockets, no router) N times bare, then behind
``EdgeGuard`` with in-process buckets, then with Redis buckets (when Redis answers at
``--redis-url``), each request carrying a real bearer token of this server's key. Prints one
JSON object: microseconds per request and the ratio to the bare app in the same run; with
Redis also one PING's round trip (the guard makes two script calls per request).

    python benchmarks/edge.py [--requests 20000] [--redis-url redis://127.0.0.1:6379/0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from medarchive.security.service import build_security
from medarchive.store.memory import MemoryStore
from medarchive.web.edge import EdgeGuard, TokenIdentity
from medarchive.web.ratelimit import MemoryBuckets, Rate, RedisBuckets


async def bare(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def timed(app: Any, scope: Scope, count: int) -> float:
    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        return None

    for _ in range(200):  # warm-up: caches, connections
        await app(scope, receive, send)
    start = time.perf_counter()
    for _ in range(count):
        await app(scope, receive, send)
    return (time.perf_counter() - start) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    from medarchive.fhir.search.index import build_indexer
    from medarchive.fhir.spec import load_spec
    spec = load_spec()
    security = build_security(MemoryStore(build_indexer(spec)), spec,
                              issuer="http://bench/fhir", now=lambda: datetime.now(UTC),
                              token_lifetime_s=3600)
    token = security.tokens.issue("bench", kind="client", role="integration",
                                  scope="system/*.rs", client_id="bench")["access_token"]
    scope: Scope = {"type": "http", "method": "GET", "path": "/fhir/Patient/1",
                    "raw_path": b"/fhir/Patient/1", "query_string": b"",
                    "client": ("10.0.0.1", 5000), "headers": [
                        (b"host", b"bench"), (b"accept", b"application/fhir+json"),
                        (b"authorization", f"Bearer {token}".encode())]}
    huge = Rate(1e9, 1e9)  # never refuse: measure the bookkeeping, not 429s

    def guarded(buckets: Any) -> EdgeGuard:
        return EdgeGuard(bare, max_url_bytes=8192, max_header_bytes=32768, buckets=buckets,
                         per_address=huge, per_client=huge,
                         identify=TokenIdentity(security.tokens))

    async def run() -> dict[str, Any]:
        result: dict[str, Any] = {"benchmark": "edge_guard", "requests": args.requests}
        base = await timed(bare, scope, args.requests)
        memory = await timed(guarded(MemoryBuckets()), scope, args.requests)
        result["bare_us"] = round(base, 2)
        result["guard_memory_us"] = round(memory, 2)
        result["ratio_memory"] = round(memory / base, 2)
        redis_buckets = RedisBuckets(args.redis_url, prefix=f"bench:{uuid.uuid4().hex}:")
        try:
            await redis_buckets._connect()(keys=["probe"], args=[1, 1])
        except Exception as exc:  # no Redis: report why and leave it out
            result["guard_redis_us"] = f"skipped: {exc}"
        else:
            client = redis_buckets._client
            start = time.perf_counter()
            for _ in range(500):
                await client.ping()
            result["redis_ping_us"] = round((time.perf_counter() - start) / 500 * 1e6, 2)
            redis_time = await timed(guarded(redis_buckets), scope, args.requests // 4)
            result["guard_redis_us"] = round(redis_time, 2)
            result["ratio_redis"] = round(redis_time / base, 2)
        finally:
            await redis_buckets.close()
        return result

    try:
        print(json.dumps(asyncio.run(run()), indent=2))
    finally:
        security.close()


if __name__ == "__main__":
    main()
