"""Session metrics for Prometheus, from the middleware's ``events=`` observer.

``SessionMetrics`` is the observer: it counts sessions created, destroyed (logout),
regenerated, revoked and expired, rejected cookies and store errors (by operation), and keeps
a histogram of store call durations by operation. ``/metrics`` serves them in Prometheus'
text format. The metrics live in their own ``CollectorRegistry`` (pass one, or get a new one),
so two apps in one process, or two tests, never share counts. Run it with::

    SECRET_KEY=... uvicorn examples.prometheus_metrics:app

``/`` counts visits; ``POST /login/{user}`` logs in (a new session id);
``POST /logout-others`` logs out the user's other sessions; ``/logout`` clears the session.
Sessions are kept in memory (``MemoryBackend``), so nothing else has to run; with another
backend the metrics are the same.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from starlette_session import SessionBackend, SessionMiddleware, regenerate_session
from starlette_session.backends.memory import MemoryBackend
from starlette_session.events import SessionEvent
from starlette_session.users import logout_other_sessions

# Only for trying the example out: a real app must read a long random secret from its config.
SECRET_KEY = os.environ.get("SECRET_KEY", "example-only-change-me")

#: Store calls take microseconds (memory) to tens of milliseconds (a remote store).
STORE_CALL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def operation_label(operation: str | None) -> str:
    """A label value for a store operation: the middleware's few fixed wordings (``"read a session"``)."""
    return operation or "unknown"


class SessionMetrics:
    """An ``events=`` observer that feeds Prometheus counters and a histogram.

    Args:
        registry: where the metrics are registered; a new ``CollectorRegistry`` if ``None``.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry() if registry is None else registry
        self.created = self._counter("sessions_created", "Sessions created (first saved).")
        self.destroyed = self._counter("sessions_destroyed", "Sessions cleared by the app (logouts).")
        self.regenerated = self._counter("sessions_regenerated", "Sessions moved to a new id (logins).")
        self.revoked = self._counter(
            "sessions_revoked", "logout_other_sessions() calls that revoked at least one session."
        )
        self.expired = self._counter(
            "sessions_expired", "Cookies naming a session that was gone or past its age."
        )
        self.rejected_cookies = self._counter(
            "session_cookies_rejected", "Session cookies that failed verification (tampered, too old)."
        )
        self.store_errors = Counter(
            "session_store_errors",
            "Session store failures, by the operation the error names.",
            ["operation"],
            registry=self.registry,
        )
        self.store_calls = Histogram(
            "session_store_call_duration_seconds",
            "Session store call durations, by operation.",
            ["operation"],
            buckets=STORE_CALL_BUCKETS,
            registry=self.registry,
        )
        self._counters = {
            "created": self.created,
            "destroyed": self.destroyed,
            "regenerated": self.regenerated,
            "revoked": self.revoked,
            "expired": self.expired,
            "rejected_cookie": self.rejected_cookies,
        }

    def _counter(self, name: str, documentation: str) -> Counter:
        return Counter(name, documentation, registry=self.registry)

    def __call__(self, event: SessionEvent) -> None:
        """Record one event: this runs inline in the request, so it only increments."""
        if event.type == "store_call":
            if event.duration is not None:
                self.store_calls.labels(operation_label(event.operation)).observe(event.duration)
        elif event.type == "store_error":
            self.store_errors.labels(operation_label(event.operation)).inc()
        else:
            counter = self._counters.get(event.type)
            if counter is not None:  # "loaded" and "saved" are left out: one per request
                counter.inc()

    def render(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)


async def index(request: Request) -> JSONResponse:
    count = int(request.session.get("count", 0)) + 1
    request.session["count"] = count
    return JSONResponse({"count": count, "user": request.session.get("user_id")})


async def login(request: Request) -> JSONResponse:
    regenerate_session()  # a new id at login, against session fixation
    request.session["user_id"] = request.path_params["user"]
    return JSONResponse({"user": request.session["user_id"]})


async def logout_others(request: Request) -> JSONResponse:
    return JSONResponse({"revoked": await logout_other_sessions()})


async def logout(request: Request) -> JSONResponse:
    request.session.clear()
    return JSONResponse({"count": 0})


def create_app(metrics: SessionMetrics | None = None, backend: SessionBackend | None = None) -> Starlette:
    """Build the app around ``metrics`` (new ones if ``None``) and ``backend`` (memory if ``None``)."""
    metrics = SessionMetrics() if metrics is None else metrics

    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/", index),
            Route("/login/{user}", login, methods=["POST"]),
            Route("/logout-others", logout_others, methods=["POST"]),
            Route("/logout", logout),
            Route("/metrics", metrics_endpoint),
        ],
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=SECRET_KEY,
                backend=MemoryBackend() if backend is None else backend,
                user_key="user_id",  # so that logout_other_sessions() knows the user's sessions
                exclude=["/metrics"],  # a scrape needs no session
                events=metrics,
            )
        ],
    )


app = create_app()
