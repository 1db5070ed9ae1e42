"""Driving an ASGI app in-process, and timing it.

A request is a hand-built HTTP scope plus ``receive``/``send`` callables: no HTTP client, no
sockets, so what is timed is the app and its middleware only. Each sample is one request
timed with ``perf_counter_ns``; results are medians over many requests after a warm-up, and
every measurement stops at its time budget, so a slow contender cannot stretch the run.
"""

from __future__ import annotations

import asyncio
import gc
import random
import statistics
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_REQUEST_MESSAGE: Message = {"type": "http.request", "body": b"", "more_body": False}


class RequestFailedError(RuntimeError):
    """The app answered a benchmark request with something other than 200."""


@dataclass
class Response:
    """What the app sent back: status and headers (the body is drained, not kept)."""

    status: int = 0
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def header_values(self, name: bytes) -> list[str]:
        """Return the values of every header called ``name`` (lower case)."""
        return [value.decode("latin-1") for key, value in self.headers if key.lower() == name]


def build_scope(path: str, cookie: str | None) -> dict[str, Any]:
    """Return the HTTP scope of ``GET path`` with an optional ``Cookie`` header, as uvicorn builds it."""
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"user-agent", b"starlette-session-bench"),
        (b"accept", b"*/*"),
    ]
    if cookie is not None:
        headers.append((b"cookie", cookie.encode("latin-1")))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("ascii"),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50_000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _receive() -> Message:
    return _REQUEST_MESSAGE


class Caller:
    """Sends one request to ``app`` per call; raises if it is not answered with 200.

    Args:
        app: the ASGI app.
        path: the request path.
        cookie: the ``Cookie`` header value, or ``None`` for none.
    """

    def __init__(self, app: ASGIApp, path: str, cookie: str | None = None) -> None:
        self.app = app
        self.template = build_scope(path, cookie)

    async def __call__(self) -> None:
        status = 0

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]

        # A fresh scope per request: middleware and routing write into it.
        await self.app(dict(self.template), _receive, send)
        if status != 200:
            raise RequestFailedError(f"{self.template['path']} answered {status}")

    async def response(self) -> Response:
        """Send one request and return the response's status and headers."""
        result = Response()

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                result.status = message["status"]
                result.headers = list(message.get("headers", []))

        await self.app(dict(self.template), _receive, send)
        return result


@dataclass(frozen=True)
class Budget:
    """How long one measurement may run.

    Attributes:
        warmup: requests sent before timing starts.
        iterations: the most requests timed.
        min_iterations: the fewest requests timed, whatever the time.
        seconds: timing stops after this long once ``min_iterations`` are done.
    """

    warmup: int = 200
    iterations: int = 3000
    min_iterations: int = 100
    seconds: float = 1.0


@dataclass
class Timing:
    """Per-request wall times of one or more measurement rounds, in nanoseconds."""

    samples_ns: list[int] = field(default_factory=list)
    #: The event loop thread's CPU time of each request (``time_sequential(cpu=True)`` only).
    cpu_samples_ns: list[int] = field(default_factory=list)

    def add(self, other: Timing) -> None:
        self.samples_ns.extend(other.samples_ns)
        self.cpu_samples_ns.extend(other.cpu_samples_ns)

    @property
    def cpu_median_us(self) -> float | None:
        return statistics.median(self.cpu_samples_ns) / 1000 if self.cpu_samples_ns else None

    @property
    def median_us(self) -> float:
        return statistics.median(self.samples_ns) / 1000

    @property
    def p90_us(self) -> float:
        return statistics.quantiles(self.samples_ns, n=10)[-1] / 1000 if len(self.samples_ns) > 1 else 0.0

    def summary(self) -> dict[str, float]:
        return {
            "median_us": round(self.median_us, 2),
            "p90_us": round(self.p90_us, 2),
            "iterations": len(self.samples_ns),
        }


async def time_sequential(
    call: Callable[[], Awaitable[None]], budget: Budget, *, cpu: bool = False
) -> Timing:
    """Time ``call`` one request at a time.

    Args:
        call: sends one request.
        budget: warm-up, iteration and time limits.
        cpu: also record the CPU time the calling (event loop) thread spent on each request,
            which leaves out the waits for a store and a worker thread (each request then also
            pays for two ``thread_time_ns`` calls, inside its wall time).

    Returns:
        The wall time (and, with ``cpu``, the loop thread's CPU time) of each timed request.
    """
    for _ in range(budget.warmup):
        await call()
    gc.collect()
    samples: list[int] = []
    cpu_samples: list[int] = []
    clock = time.perf_counter_ns
    cpu_clock = time.thread_time_ns
    deadline = clock() + int(budget.seconds * 1e9)
    for i in range(budget.iterations):
        start = clock()
        if cpu:
            cpu_start = cpu_clock()
            await call()
            cpu_samples.append(cpu_clock() - cpu_start)
        else:
            await call()
        end = clock()
        samples.append(end - start)
        if end > deadline and i + 1 >= budget.min_iterations:
            break
    return Timing(samples, cpu_samples)


async def time_interleaved(
    calls: Sequence[Callable[[], Awaitable[None]]], budget: Budget, *, cpu: bool = False
) -> list[Timing]:
    """Time ``calls`` taking turns: each iteration sends one request of each, in a shuffled order.

    Timed each in its own loop, a call runs after thousands of its own kind, with the caches
    and branch predictors trained on it; a request of a server does not. Taking turns, every
    call runs after the others (and after their waits on a store), so each meets the same
    conditions and the same slow spells of the machine, and their differences are fair. The
    order is shuffled anew each iteration (with a fixed seed), so that each call follows each
    other equally often: what ran just before a call decides how cold it finds the caches.

    Args:
        calls: the calls to time; ``budget.iterations`` and ``min_iterations`` count rounds of all.
        budget: warm-up, iteration and time limits.
        cpu: also record the event loop thread's CPU time of each call (see ``time_sequential``).

    Returns:
        One ``Timing`` per call, in the order of ``calls``.
    """
    for _ in range(budget.warmup):
        for call in calls:
            await call()
    gc.collect()
    timings = [Timing() for _ in calls]
    clock = time.perf_counter_ns
    cpu_clock = time.thread_time_ns
    order = list(range(len(calls)))
    shuffle = random.Random(0).shuffle
    deadline = clock() + int(budget.seconds * 1e9)
    for i in range(budget.iterations):
        shuffle(order)
        for index in order:
            call, timing = calls[index], timings[index]
            start = clock()
            if cpu:
                cpu_start = cpu_clock()
                await call()
                timing.cpu_samples_ns.append(cpu_clock() - cpu_start)
            else:
                await call()
            timing.samples_ns.append(clock() - start)
        if clock() > deadline and i + 1 >= budget.min_iterations:
            break
    return timings


@dataclass
class Throughput:
    """Requests completed and the wall time they took."""

    requests: int = 0
    seconds: float = 0.0

    def add(self, other: Throughput) -> None:
        self.requests += other.requests
        self.seconds += other.seconds

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def us_per_request(self) -> float:
        return self.seconds / self.requests * 1e6 if self.requests else 0.0

    def summary(self) -> dict[str, float]:
        return {
            "requests_per_s": round(self.per_second, 1),
            "us_per_request": round(self.us_per_request, 2),
            "requests": self.requests,
        }


async def time_concurrent(
    call: Callable[[], Awaitable[None]], concurrency: int, budget: Budget
) -> Throughput:
    """Run batches of ``concurrency`` simultaneous requests and measure the throughput.

    Each batch starts ``concurrency`` requests at once and waits for all of them, like 64
    clients each sending their next request as soon as the previous one is answered.

    Args:
        call: sends one request.
        concurrency: requests in flight at once.
        budget: ``warmup`` and ``iterations`` count requests; ``seconds`` bounds the timed part.

    Returns:
        The requests completed in the timed part and the seconds they took.
    """

    async def worker(count: int) -> None:
        for _ in range(count):
            await call()

    await asyncio.gather(*(worker(max(1, budget.warmup // concurrency)) for _ in range(concurrency)))
    gc.collect()
    per_worker_round = 8
    done = 0
    start = time.perf_counter()
    deadline = start + budget.seconds
    while done < budget.iterations:
        await asyncio.gather(*(worker(per_worker_round) for _ in range(concurrency)))
        done += per_worker_round * concurrency
        if time.perf_counter() > deadline and done >= budget.min_iterations:
            break
    return Throughput(done, time.perf_counter() - start)
