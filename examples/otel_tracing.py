"""An OpenTelemetry span for every session store call, from the middleware's ``events=`` observer.

``StoreCallTracer`` is the observer. The middleware tells it of a store call once the call
has returned (a ``"store_call"`` event with its operation and duration), so the span is
recorded after the fact, with explicit start and end times: it ends now and started
``duration`` seconds ago. The observer runs in the request's context, so when the app is
traced (OpenTelemetry's ASGI instrumentation, say) each store span is a child of the
request's span. Run it with spans printed to the console::

    OTEL_CONSOLE=1 SECRET_KEY=... uvicorn examples.otel_tracing:app

Without ``OTEL_CONSOLE`` the spans go to the global tracer provider: none until the app (or
``opentelemetry-instrument``) sets one.

``/`` counts visits and ``/logout`` clears the session. Sessions are kept in memory
(``MemoryBackend``) unless ``create_app`` is given another backend.
"""

from __future__ import annotations

import os
import time

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from starlette_session import SessionBackend, SessionMiddleware
from starlette_session.backends.memory import MemoryBackend
from starlette_session.events import SessionEvent

# Only for trying the example out: a real app must read a long random secret from its config.
SECRET_KEY = os.environ.get("SECRET_KEY", "example-only-change-me")


class StoreCallTracer:
    """An ``events=`` observer that records a span named ``session.store <operation>`` per store call.

    Args:
        tracer_provider: the provider to get the tracer from; the global one if ``None``.
    """

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer("starlette_session", tracer_provider=tracer_provider)

    def __call__(self, event: SessionEvent) -> None:
        if event.type != "store_call" or event.duration is None:
            return
        end = time.time_ns()
        span = self.tracer.start_span(
            f"session.store {event.operation}",
            kind=trace.SpanKind.CLIENT,
            start_time=end - round(event.duration * 1e9),
            attributes={
                "session.backend": event.backend,
                "session.operation": event.operation or "",
                "session.duration_s": event.duration,
            },
        )
        span.end(end_time=end)


async def index(request: Request) -> JSONResponse:
    count = int(request.session.get("count", 0)) + 1
    request.session["count"] = count
    return JSONResponse({"count": count})


async def logout(request: Request) -> JSONResponse:
    request.session.clear()
    return JSONResponse({"count": 0})


def create_app(
    tracer_provider: trace.TracerProvider | None = None, backend: SessionBackend | None = None
) -> Starlette:
    """Build the app, tracing store calls to ``tracer_provider`` into ``backend`` (memory if ``None``)."""
    return Starlette(
        routes=[Route("/", index), Route("/logout", logout)],
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=SECRET_KEY,
                backend=MemoryBackend() if backend is None else backend,
                events=StoreCallTracer(tracer_provider),
            )
        ],
    )


def console_provider() -> TracerProvider:
    """A provider that prints each span as JSON (in production: an OTLP exporter instead)."""
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    return provider


app = create_app(console_provider() if os.environ.get("OTEL_CONSOLE") else None)
