"""The one helper that runs a blocking client call without blocking the event loop.

Under asyncio the call goes to this package's own worker threads, and its result comes back
to the loop through one ``loop.call_soon_threadsafe``: measured in ``benchmarks/``, a single
blocking Redis ``GET`` through it takes about half the time it takes through
``loop.run_in_executor`` with a ``ThreadPoolExecutor``, whose ``concurrent.futures.Future``,
its condition variable and the chained asyncio future add work on both threads and keep the
worker holding the GIL just when the loop wakes up. ``anyio.to_thread.run_sync`` costs more
still (its per-call limiter bookkeeping). Under any other event loop (trio), anyio's thread
pool is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, ParamSpec, TypeAlias, TypeVar

import anyio.to_thread

P = ParamSpec("P")
T = TypeVar("T")

#: Threads for blocking store calls: as many calls can wait on a store at once.
MAX_THREADS = 40

#: The loop to answer on, the future it waits on, and the call.
_Job: TypeAlias = tuple[
    asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...], dict[str, Any]
]


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """Runs on the loop: hand the call's outcome to the waiting coroutine, unless it gave up."""
    if future.cancelled():  # the caller was cancelled (a timeout): nobody wants the result
        return
    if error is None:
        future.set_result(result)
    elif isinstance(error, StopIteration):  # an asyncio future refuses StopIteration
        future.set_exception(RuntimeError(f"the blocking call raised {error!r}"))
    else:
        future.set_exception(error)


class _Workers:
    """Up to ``max_threads`` daemon threads taking blocking calls from one queue.

    A call claims an idle thread or starts a new one; past ``max_threads`` it waits in the
    queue for the first thread to be free. Threads never stop until ``close``.
    """

    def __init__(self, max_threads: int) -> None:
        self.max_threads = max_threads
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    def submit(self, job: _Job) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
                start = False
            else:
                start = self._threads < self.max_threads
                self._threads += start
        self._jobs.put(job)
        if start:
            name = f"starlette_session_{self._threads}"
            threading.Thread(target=self._work, name=name, daemon=True).start()

    def _work(self) -> None:
        jobs, lock = self._jobs, self._lock
        while True:
            job = jobs.get()
            if job is None:
                return
            loop, future, func, args, kwargs = job
            del job
            error: BaseException | None = None
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                result, error = None, exc
            del func, args, kwargs
            with lock:
                self._idle += 1
            # Last, so that this thread is back waiting on the queue (GIL released) by the time
            # the loop wakes up to take the result.
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
                loop.call_soon_threadsafe(_resolve, future, result, error)
            del loop, future, result, error

    def close(self) -> None:
        """Let every thread finish its current call and stop."""
        with self._lock:
            threads, self._threads, self._idle = self._threads, 0, 0
        for _ in range(threads):
            self._jobs.put(None)


_workers: _Workers | None = None
_workers_lock = threading.Lock()


def _get_workers() -> _Workers:
    global _workers  # noqa: PLW0603 - one set of threads for the process, made on first use
    workers = _workers
    if workers is None:
        with _workers_lock:
            if _workers is None:
                _workers = _Workers(MAX_THREADS)
            workers = _workers
    return workers


def _forget_workers() -> None:
    """After ``fork``: the child has none of the parent's threads, so it starts its own."""
    global _workers  # noqa: PLW0603
    _workers = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_workers)


async def run_sync(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``func(*args, **kwargs)`` in a worker thread and return its result."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio
        call = functools.partial(func, *args, **kwargs)
        return await anyio.to_thread.run_sync(call)
    future: asyncio.Future[T] = loop.create_future()
    (_workers or _get_workers()).submit((loop, future, func, args, kwargs))
    return await future
