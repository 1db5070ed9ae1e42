"""The in-process measurements: workloads x contenders, store round trips, and store latency.

Each function takes contenders that are already built (``Built``) and returns plain dicts, ready
for ``benchmarks.report`` and the JSON file.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from benchmarks.contenders import COOKIE_NAME, Contender, Stores
from benchmarks.harness import ASGIApp, Budget, Caller, Throughput, Timing, time_concurrent, time_sequential
from benchmarks.store_stats import fold_redis_scripts, memcached_stats, per_request, redis_commandstats


@dataclass(frozen=True)
class Workload:
    """One kind of request: a path, sent with or without the seeded session cookie."""

    name: str
    path: str
    with_cookie: bool
    description: str


WORKLOADS = [
    Workload("read", "/read", True, "existing 310-byte session, endpoint reads a key"),
    Workload("write", "/write", True, "existing session, endpoint sets a key"),
    Workload("new", "/write", False, "no cookie, endpoint sets a key (a new session)"),
    Workload("no-touch", "/none", False, "no cookie, endpoint does not touch the session"),
]
CONCURRENT = Workload("read-c64", "/read", True, "64 concurrent reads of the existing session")
#: The user_key phase's "new": a login, so that the new session is indexed (a new user each time).
LOGIN = Workload("new", "/login", False, "no cookie, endpoint sets user_id (a user's first session)")
USER_KEY_WORKLOADS = [WORKLOADS[0], WORKLOADS[1], LOGIN]
CONCURRENCY = 64


@dataclass
class Built:
    """A contender's app, ready to serve, with the Cookie header of its seeded session."""

    contender: Contender
    app: ASGIApp
    cookie: str | None

    @property
    def name(self) -> str:
        return self.contender.name

    def caller(self, workload: Workload) -> Caller:
        return Caller(self.app, workload.path, self.cookie if workload.with_cookie else None)


def cookie_from_set_cookie(values: Iterable[str], name: str = COOKIE_NAME) -> str | None:
    """Return ``name=value`` from the Set-Cookie header that sets ``name``, if any."""
    for value in values:
        pair = value.split(";", 1)[0].strip()
        if pair.startswith(name + "="):
            return pair
    return None


async def build(stack: contextlib.AsyncExitStack, contender: Contender, stores: Stores) -> Built:
    """Build ``contender`` inside ``stack`` and seed its session.

    Raises:
        RuntimeError: seeding did not produce a session cookie (for a contender with sessions).
    """
    app = await stack.enter_async_context(contender.factory(stores))
    response = await Caller(app, "/seed").response()
    cookie = cookie_from_set_cookie(response.header_values(b"set-cookie"))
    if cookie is None and contender.family != "bare":
        raise RuntimeError(f"{contender.name}: /seed set no session cookie (status {response.status})")
    return Built(contender, app, cookie)


async def run_workloads(
    built: Sequence[Built],
    workloads: Sequence[Workload],
    budget: Budget,
    rounds: int,
    progress: Callable[[str], None] = print,
) -> dict[str, dict[str, dict[str, float]]]:
    """Time each workload on each contender.

    The contenders take turns, ``rounds`` times, so that a slow spell of the machine spreads
    over all of them instead of landing on one.

    Returns:
        ``{workload: {contender: {"median_us", "p90_us", "iterations"}}}``.
    """
    results: dict[str, dict[str, dict[str, float]]] = {}
    for workload in workloads:
        timings = {item.name: Timing() for item in built}
        for _ in range(rounds):
            for item in built:
                timings[item.name].add(await time_sequential(item.caller(workload), budget))
        results[workload.name] = {name: timing.summary() for name, timing in timings.items()}
        progress(
            f"  {workload.name:9} "
            + "  ".join(f"{name} {timing.median_us:.1f}" for name, timing in timings.items())
        )
    return results


async def run_concurrent(
    built: Sequence[Built],
    budget: Budget,
    rounds: int,
    workload: Workload = CONCURRENT,
    concurrency: int = CONCURRENCY,
    progress: Callable[[str], None] = print,
) -> dict[str, dict[str, float]]:
    """Measure the throughput of ``concurrency`` simultaneous requests on each contender.

    Returns:
        ``{contender: {"requests_per_s", "us_per_request", "requests"}}``.
    """
    totals = {item.name: Throughput() for item in built}
    for _ in range(rounds):
        for item in built:
            totals[item.name].add(await time_concurrent(item.caller(workload), concurrency, budget))
    progress(
        f"  {workload.name:9} "
        + "  ".join(f"{name} {total.per_second:.0f}/s" for name, total in totals.items())
    )
    return {name: total.summary() for name, total in totals.items()}


def redis_address(url: str) -> tuple[str, int]:
    """Return the ``(host, port)`` of a ``redis://`` URL."""
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"no host:port in {url!r}")
    return parts.hostname, parts.port


async def count_round_trips(
    built: Sequence[Built], stores: Stores, workloads: Sequence[Workload], requests: int
) -> dict[str, dict[str, dict[str, float]]]:
    """Count the store commands each request sends, from the server's own counters.

    Only contenders on Redis or memcached are counted; nothing else may use those servers
    meanwhile. The commands of Redis scripts are not counted as round trips
    (``store_stats.fold_redis_scripts``).

    Returns:
        ``{contender: {workload: {COMMAND: calls per request}}}``.
    """
    results: dict[str, dict[str, dict[str, float]]] = {}
    for item in built:
        store = item.contender.store
        snapshot: Callable[[], Any]
        if store == "redis":
            address = redis_address(stores.need_redis())

            def snapshot(address: tuple[str, int] = address) -> Any:
                return redis_commandstats(address)

        elif store == "memcached":
            address = stores.need_memcached()

            def snapshot(address: tuple[str, int] = address) -> Any:
                return memcached_stats(address)

        else:
            continue
        per_workload: dict[str, dict[str, float]] = {}
        for workload in workloads:
            call = item.caller(workload)
            await call()  # connections are opened outside the count
            before = snapshot()
            for _ in range(requests):
                await call()
            after = snapshot()
            if store == "redis":
                after = fold_redis_scripts(before, after)
            per_workload[workload.name] = per_request(before, after, requests)
        results[item.name] = per_workload
    return results


def measure_rtt_ms(address: tuple[str, int], request: bytes, reply_end: bytes, samples: int = 200) -> float:
    """Return the median round trip of ``request`` to ``address`` in milliseconds (plain socket)."""
    import socket  # noqa: PLC0415
    import statistics  # noqa: PLC0415

    times: list[float] = []
    with socket.create_connection(address, timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(samples):
            start = time.perf_counter()
            sock.sendall(request)
            data = b""
            while not data.endswith(reply_end):
                data += sock.recv(4096)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


#: The backend methods ``count_backend_calls`` counts.
BACKEND_METHODS = (
    "read",
    "read_for_update",
    "create",
    "replace",
    "write",
    "compare_and_swap",
    "touch",
    "remove",
)


class _CallCounter:
    """Wraps a backend's methods on the instance and counts the outermost calls."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.counts: Counter[str] = Counter()
        self._depth = 0

    def _wrap(self, name: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def counted(*args: Any, **kwargs: Any) -> Any:
            if self._depth == 0:
                self.counts[name] += 1
            self._depth += 1
            try:
                return await method(*args, **kwargs)
            finally:
                self._depth -= 1

        return counted

    def __enter__(self) -> _CallCounter:
        for name in BACKEND_METHODS:
            setattr(self.backend, name, self._wrap(name, getattr(self.backend, name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for name in BACKEND_METHODS:
            vars(self.backend).pop(name, None)


async def count_backend_calls(
    built: Sequence[Built], workloads: Sequence[Workload], requests: int
) -> dict[str, dict[str, dict[str, float]]]:
    """Count the backend calls each request makes, for stores without a server to ask (files, memory).

    The backend's methods are wrapped on the instance while counting; a call made inside
    another (a default ``read_for_update`` that calls ``read``) is not counted again.

    Returns:
        ``{contender: {workload: {method: calls per request}}}``.
    """
    from benchmarks.floors import session_middleware  # noqa: PLC0415 - floors imports this module

    results: dict[str, dict[str, dict[str, float]]] = {}
    for item in built:
        per_workload: dict[str, dict[str, float]] = {}
        with _CallCounter(session_middleware(item.app).strategy.backend) as counter:
            for workload in workloads:
                call = item.caller(workload)
                await call()
                before = Counter(counter.counts)
                for _ in range(requests):
                    await call()
                per_workload[workload.name] = per_request(before, Counter(counter.counts), requests)
        results[item.name] = per_workload
    return results
