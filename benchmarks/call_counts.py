"""How much Python a read runs, counted rather than timed: ``python -m benchmarks.call_counts``.

Wall and CPU times of a read move with the machine (and with how cold the caches are after a
wait on the store); the number of Python function calls a request makes does not. For each
server-side backend given (default: memory, Redis through ``redis.asyncio``, memcached through
aiomcache), this counts, under ``cProfile``, the calls per request of our read, of our cookie
read, and of the bare client call our read makes (``benchmarks.floors.bare_call``), and prints
how many calls our read makes beyond ``bare call + memory read``: what the store's path adds
to the middleware's own work, which the memory read measures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from benchmarks import contenders as c
from benchmarks.floors import bare_call
from benchmarks.suite import WORKLOADS, build

REQUESTS = 500
DEFAULT_BACKENDS = ("ours-memory", "ours-redis-async", "ours-aiomemcache", "ours-redis-sync")


async def count(call: Callable[[], Awaitable[None]], requests: int = REQUESTS) -> float:
    """Return the Python function calls per ``await call()``, after a warm-up."""
    for _ in range(50):
        await call()
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(requests):
        await call()
    profile.disable()
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]  # filled by Stats()
    calls: int = sum(entry[1] for entry in stats.values())
    return calls / requests


async def measure(
    stores: c.Stores, names: Sequence[str], requests: int = REQUESTS
) -> list[tuple[str, float, float, float]]:
    """Return ``(backend, our read, its bare call, our read - bare call - memory read)`` per backend.

    The first row is ``ours-cookie`` (its bare call and extra are 0).
    """
    read = WORKLOADS[0]
    rows = []
    async with contextlib.AsyncExitStack() as stack:
        cookie = await build(stack, c.CONTENDERS["ours-cookie"], stores)
        memory = await build(stack, c.CONTENDERS["ours-memory"], stores)
        cookie_calls = await count(cookie.caller(read), requests)
        memory_calls = await count(memory.caller(read), requests)
        rows.append(("ours-cookie", cookie_calls, 0.0, 0.0))
        for name in names:
            built = memory if name == "ours-memory" else await build(stack, c.CONTENDERS[name], stores)
            bare = await bare_call(built)
            ours = await count(built.caller(read), requests)
            bare_calls = await count(bare.through_bridge if bare.blocking else bare, requests)
            rows.append((name, ours, bare_calls, ours - bare_calls - memory_calls))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backends", nargs="*", default=list(DEFAULT_BACKENDS))
    args = parser.parse_args(argv)
    from benchmarks.__main__ import _servers  # noqa: PLC0415 - starts real Redis and memcached

    with tempfile.TemporaryDirectory(prefix="starlette-session-calls-") as tmp, _servers() as (url, mc):
        stores = c.Stores(workdir=Path(tmp), redis_url=url, memcached=mc)
        rows = asyncio.run(measure(stores, args.backends))
    print(f"{'contender':24} {'our read':>9} {'bare call':>10} {'read - bare - memory read':>26}")
    for name, ours, bare, extra in rows:
        print(f"{name:24} {ours:9.0f} {bare:10.0f} {extra:26.0f}")
    print("(Python function calls per request, counted by cProfile)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
