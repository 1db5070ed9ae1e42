"""The outage policy: every store call bounded in time, and a circuit breaker in front of the store.

``StoreGuard`` runs the middleware's store calls. A call that takes longer than ``timeout``
fails with ``BackendError``; after ``threshold`` consecutive failures the breaker opens and
calls fail at once, without touching the store, for ``cooldown`` seconds; then one call at a
time is let through as a probe, and the first success closes the breaker. What a request
then gets (503 by default, or the app's ``on_backend_error`` answer) is decided by the
middleware. See ``docs/concurrency.md``.
"""

from __future__ import annotations

import asyncio
import math
import time
from asyncio import current_task, get_running_loop
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias, TypeVar

import anyio
from starlette.responses import PlainTextResponse, Response

from starlette_session.backends.base import backend_error
from starlette_session.events import Observer, SessionEvent, emit
from starlette_session.exceptions import BackendError, ConfigurationError, SessionConflictError

T = TypeVar("T")

#: Seconds a store call may take by default.
DEFAULT_STORE_TIMEOUT = 2.0
#: Consecutive failures that open the breaker by default.
DEFAULT_BREAKER_THRESHOLD = 3
#: Seconds the open breaker refuses calls by default before it lets a probe through.
DEFAULT_BREAKER_COOLDOWN = 0.5


class StoreGuard:
    """Bounds each store call by ``timeout`` and stops calling a failing store for a while.

    Args:
        backend_name: the store's name, for error texts.
        timeout: seconds each call may take (``None``: no bound).
        threshold: consecutive failures after which the breaker opens (0: never).
        cooldown: seconds the open breaker refuses calls before it lets one probe through.
        clock: a monotonic clock, for tests.

    Raises:
        ConfigurationError: a negative or zero ``timeout`` or ``cooldown``, or a negative ``threshold``.
    """

    def __init__(
        self,
        backend_name: str,
        *,
        timeout: float | None = DEFAULT_STORE_TIMEOUT,
        threshold: int = DEFAULT_BREAKER_THRESHOLD,
        cooldown: float = DEFAULT_BREAKER_COOLDOWN,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout is not None and not timeout > 0:
            raise ConfigurationError(f"store_timeout={timeout!r} must be a number of seconds > 0, or None")
        if not isinstance(threshold, int) or threshold < 0:
            raise ConfigurationError(f"breaker_threshold={threshold!r} must be an int >= 0 (0 turns it off)")
        if not cooldown > 0:
            raise ConfigurationError(f"breaker_cooldown={cooldown!r} must be a number of seconds > 0")
        self.backend_name = backend_name
        self.timeout = timeout
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._open_until = 0.0
        self._probing = False
        #: Seconds the last call took, measured for ``observer`` (``None`` without one, or before
        #: the first call).
        self.last_duration: float | None = None
        #: ``SessionMiddleware(events=...)``: told of every store call.
        self.observer: Observer | None = None
        self._watchdog: _Watchdog | None = None

    @property
    def is_open(self) -> bool:
        """Whether calls are being refused right now."""
        return bool(self.threshold) and self._failures >= self.threshold

    @property
    def retry_after(self) -> int:
        """Whole seconds a client should wait before trying again."""
        return max(1, math.ceil(self.cooldown))

    async def run(self, operation: str, func: Callable[..., Awaitable[T]], /, *args: Any) -> T:
        """Await ``func(*args)`` under the timeout and the breaker.

        Raises:
            BackendError: the store failed, timed out, or the breaker is open.
        """
        probe = self._admit(operation) if self.threshold and self._failures >= self.threshold else False
        started = 0.0 if self.observer is None else time.perf_counter()
        task: asyncio.Task[Any] | None = None
        if self.timeout is not None and _HAS_UNCANCEL:
            try:
                loop = get_running_loop()
            except RuntimeError:  # not asyncio (trio): anyio's cancel scope below
                pass
            else:
                task = current_task(loop)
        try:
            if self.timeout is None:
                result = await func(*args)
            elif task is not None:
                # The watchdog's bookkeeping, inlined (no frame of its own to resume through):
                # this runs on every store call. A cancellation by the loop's watchdog alone
                # (our token expired and no other was pending) becomes a TimeoutError.
                watchdog = self._watchdog
                if watchdog is None or watchdog.loop is not loop:
                    watchdog = self._watchdog = _Watchdog(loop, self.timeout)
                token = (watchdog.clock() + watchdog.timeout, task, task.cancelling())  # type: ignore[attr-defined, unused-ignore]
                calls, expired = watchdog.calls, watchdog.expired
                calls[token] = None
                if watchdog.timer is None:
                    watchdog.arm(token[0])
                try:
                    result = await func(*args)
                except asyncio.CancelledError:
                    if token in expired and task.uncancel() <= token[2]:  # type: ignore[attr-defined, unused-ignore]  # 3.11+
                        raise TimeoutError from None
                    raise
                else:
                    if expired and token in expired:  # finished anyway: take our cancellation back
                        task.uncancel()  # type: ignore[attr-defined, unused-ignore]  # 3.11+
                finally:
                    del calls[token]
                    if expired:
                        expired.discard(token)
            else:  # trio, or Python 3.10 (no Task.uncancel to tell our cancellation from others')
                with anyio.fail_after(self.timeout):
                    result = await func(*args)
        except TimeoutError:
            self._failed()
            error = backend_error(self.backend_name, f"{operation} within {self.timeout} s")
            error.operation = operation
            self._observe(operation, started, error)
            raise error from None
        except SessionConflictError:
            self._observe(operation, started, None)
            raise  # contention on one record, not an outage: the breaker does not count it
        except BackendError as error:
            self._failed()
            error.operation = operation  # one wording per operation, whatever the store called it
            self._observe(operation, started, error)
            raise
        except BaseException:
            self._observe(operation, started, None)
            raise
        finally:
            if probe:
                self._probing = False
        if self.observer is not None:
            self._observe(operation, started, None)
        self._failures = 0
        return result

    def _observe(self, operation: str, started: float, error: BackendError | None) -> None:
        if self.observer is not None:
            self.last_duration = time.perf_counter() - started
            emit(
                self.observer,
                SessionEvent(
                    "store_call",
                    self.backend_name,
                    self.last_duration,
                    operation=operation,
                    error=None if error is None else str(error),
                ),
            )

    def _admit(self, operation: str) -> bool:
        """Return whether the call is a probe; raise if the breaker refuses it."""
        if not self.is_open:
            return False
        if self._probing or self._clock() < self._open_until:
            error = backend_error(
                self.backend_name, f"{operation}: not tried, the store failed {self._failures} times in a row"
            )
            error.operation = operation
            raise error
        self._probing = True
        return True

    def _failed(self) -> None:
        self._failures += 1
        if self.is_open:
            self._open_until = self._clock() + self.cooldown


#: A watched call: its deadline, its task, and how many cancellations the task had pending before.
_Token: TypeAlias = tuple[float, "asyncio.Task[Any]", int]

_HAS_UNCANCEL = hasattr(asyncio.Task, "uncancel")  # 3.11+


class _Watchdog:
    """The store calls in flight on one event loop, and one timer that cancels those overdue.

    ``asyncio.timeout`` schedules and cancels a timer per call (about 5 µs); here a call only
    enters and leaves a dict, and one timer, set for the oldest call's deadline, is re-set
    when it fires. All calls share one timeout, so the oldest call always has the nearest
    deadline, and dict order is deadline order. Only the guard's own task cancels, and only
    tasks it watches.
    """

    # Slack when comparing with the loop's clock, so that a timer firing a hair early does not
    # re-arm itself for the same instant.
    _SLACK = 0.001

    def __init__(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self.loop = loop
        self.timeout = timeout
        #: The loop's clock: ``time.monotonic`` itself when the loop's ``time()`` is asyncio's
        #: own (one Python call less per store call), else ``loop.time`` (uvloop, subclasses).
        self.clock: Callable[[], float] = (
            time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time
        )
        #: The calls in flight, oldest first (``StoreGuard.run`` adds and removes them).
        self.calls: dict[_Token, None] = {}
        #: Those the watchdog cancelled.
        self.expired: set[_Token] = set()
        self.timer: asyncio.TimerHandle | None = None

    def arm(self, deadline: float) -> None:
        self.timer = self.loop.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self.timer = None
        now = self.clock() + self._SLACK
        for token in self.calls:
            deadline, task, _ = token
            if deadline > now:
                self.arm(deadline)
                return
            if token not in self.expired:
                self.expired.add(token)
                task.cancel()


def service_unavailable(retry_after: int) -> Response:
    """The default answer to a request whose session store failed: 503, short and plain."""
    return PlainTextResponse(
        "Service Unavailable: the session store is not responding. Please try again shortly.\n",
        status_code=503,
        headers={"Retry-After": str(retry_after), "Cache-Control": "no-store"},
    )
