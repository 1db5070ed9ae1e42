"""What bounding a store call by ``store_timeout`` costs: ``python -m benchmarks.guard_cost``.

Times ``StoreGuard.run`` around a coroutine that returns at once (no store), interleaved:
without a timeout (``timeout=None``), with the guard's timeout (one watchdog timer per loop,
``starlette_session.outage``), and the same call inside ``asyncio.timeout`` (a timer per call,
what the guard used before), each against the bare ``await``. Prints medians in µs.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

from starlette_session.outage import StoreGuard

CALLS = 20_000
ROUNDS = 5


async def _nothing(key: str) -> bytes:
    return b"x"


async def main() -> None:
    watched = StoreGuard("bench", timeout=2.0, threshold=0)
    unbounded = StoreGuard("bench", timeout=None, threshold=0)
    timeout = getattr(asyncio, "timeout", None)

    async def bare() -> None:
        await _nothing("k")

    async def guard_watchdog() -> None:
        await watched.run("read a session", _nothing, "k")

    async def guard_unbounded() -> None:
        await unbounded.run("read a session", _nothing, "k")

    async def asyncio_timeout() -> None:
        assert timeout is not None
        async with timeout(2.0):
            await unbounded.run("read a session", _nothing, "k")

    variants: dict[str, Callable[[], Awaitable[None]]] = {
        "bare await": bare,
        "guard, no timeout": guard_unbounded,
        "guard, watchdog timeout": guard_watchdog,
    }
    if timeout is not None:
        variants["guard inside asyncio.timeout"] = asyncio_timeout
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(ROUNDS):
        for name, call in variants.items():
            start = time.perf_counter_ns()
            for _ in range(CALLS):
                await call()
            samples[name].append((time.perf_counter_ns() - start) / CALLS / 1000)
    for name, values in samples.items():
        print(f"{name:30} {statistics.median(values):6.2f} µs per call")


if __name__ == "__main__":
    if sys.version_info < (3, 11):
        print("Python 3.11+ (asyncio.timeout, Task.uncancel) is needed for the watchdog path")
    asyncio.run(main())
