"""The ``events=`` examples: Prometheus metrics and OpenTelemetry spans from real requests.

Each test builds the example's app around its own ``CollectorRegistry`` or ``TracerProvider``
(nothing global is touched), drives it over ASGI with httpx and checks the exact numbers:
which events a login, a read, a logout, a tampered cookie and a store failure give. Also: an
observer that raises is logged and the request still succeeds.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from examples import otel_tracing, prometheus_metrics
from examples.prometheus_metrics import SessionMetrics, operation_label
from starlette_session import SessionMiddleware
from starlette_session.backends.base import backend_error
from starlette_session.backends.file import FileBackend
from starlette_session.backends.memory import MemoryBackend
from starlette_session.events import SessionEvent
from tests.helpers import BASE_URL

DURATION = "session_store_call_duration_seconds"


@asynccontextmanager
async def client_for(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """A client that keeps its cookies, like one browser."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as client:
        yield client


class FailingBackend(MemoryBackend):
    """A ``MemoryBackend`` whose reads fail once ``failing`` is set, as Redis' do in an outage.

    The error names the operation in the store's own words, as the shipped backends do
    (``RedisBackend``: ``"GET a session"``).
    """

    failing = False

    async def read(self, session_id: str) -> bytes | None:
        if self.failing:
            raise backend_error(self.name, "GET a session", ConnectionError("connection refused"))
        return await super().read(session_id)


class SlowBackend(MemoryBackend):
    """A ``MemoryBackend`` whose reads outlast any short ``store_timeout`` once ``slow`` is set."""

    slow = False

    async def read(self, session_id: str) -> bytes | None:
        if self.slow:
            await anyio.sleep(1)
        return await super().read(session_id)


def value(metrics: SessionMetrics, name: str, **labels: str) -> float:
    """A sample's value, 0 when it was never recorded."""
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def calls(metrics: SessionMetrics, operation: str) -> float:
    """How many store calls of ``operation`` the histogram counted."""
    return value(metrics, f"{DURATION}_count", operation=operation)


def counts(metrics: SessionMetrics) -> dict[str, float]:
    return {
        name: value(metrics, f"{name}_total")
        for name in (
            "sessions_created",
            "sessions_destroyed",
            "sessions_regenerated",
            "sessions_revoked",
            "sessions_expired",
            "session_cookies_rejected",
        )
    }


def error_labels(metrics: SessionMetrics) -> dict[str, float]:
    """The store error counts by their ``operation`` label."""
    return {
        sample.labels["operation"]: sample.value
        for metric in metrics.registry.collect()
        if metric.name == "session_store_errors"
        for sample in metric.samples
        if sample.name == "session_store_errors_total"
    }


# -- Prometheus --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_prometheus_counts_a_users_sessions_lifecycle() -> None:
    metrics = SessionMetrics()
    app = prometheus_metrics.create_app(metrics)
    async with client_for(app) as laptop, client_for(app) as phone:
        assert (await laptop.get("/")).json() == {"count": 1, "user": None}  # an anonymous session
        assert counts(metrics)["sessions_created"] == 1
        assert calls(metrics, "create a session") == 1
        assert calls(metrics, "read a session") == 0  # no cookie yet: nothing to read

        assert (await laptop.post("/login/alice")).json() == {"user": "alice"}  # regenerate: new id
        assert (await phone.post("/login/alice")).json() == {"user": "alice"}  # phone had no session
        assert counts(metrics)["sessions_regenerated"] == 1
        assert counts(metrics)["sessions_created"] == 3
        assert calls(metrics, "remove a session") == 1  # the laptop's anonymous record
        assert calls(metrics, "update a user's session index") == 2

        assert (await laptop.get("/")).json() == {"count": 2, "user": "alice"}
        assert calls(metrics, "read a session") == 2  # the login's and this one
        assert calls(metrics, "save a session") == 1

        assert (await laptop.post("/logout-others")).json() == {"revoked": 1}
        assert counts(metrics)["sessions_revoked"] == 1
        assert calls(metrics, "revoke a user's sessions") == 1

        # The phone's cookie names a revoked session: it is "expired", and a new one starts.
        assert (await phone.get("/")).json() == {"count": 1, "user": None}
        assert counts(metrics)["sessions_expired"] == 1

        assert (await laptop.get("/logout")).json() == {"count": 0}
        assert counts(metrics)["sessions_destroyed"] == 1

    async with client_for(app) as tampered:
        tampered.cookies.set("session", "eyJfY3NzaWQiOiAiYWJjIn0=.forged.signature")
        assert (await tampered.get("/")).status_code == 200
    assert counts(metrics) == {
        "sessions_created": 5,  # laptop anonymous, laptop and phone logins, phone again, tampered
        "sessions_destroyed": 1,
        "sessions_regenerated": 1,
        "sessions_revoked": 1,
        "sessions_expired": 1,
        "session_cookies_rejected": 1,
    }
    assert error_labels(metrics) == {}
    # The histogram's sum is made of real durations.
    assert 0 < value(metrics, f"{DURATION}_sum", operation="create a session") < 5


@pytest.mark.anyio
async def test_prometheus_counts_store_errors_by_operation() -> None:
    metrics = SessionMetrics()
    backend = FailingBackend()
    app = prometheus_metrics.create_app(metrics, backend=backend)
    async with client_for(app) as client:
        assert (await client.get("/")).status_code == 200
        backend.failing = True
        response = await client.get("/")
        assert response.status_code == 503
        # The store's error names its command; the store call, the middleware's operation.
        assert error_labels(metrics) == {"read a session": 1}
        assert calls(metrics, "read a session") == 1  # a failed call is timed too
        # Two more failures open the breaker (3 in a row); the next request is refused without a
        # store call, by an error of the middleware whose text names the count of failures,
        # which the label leaves out.
        for _ in range(3):
            assert (await client.get("/")).status_code == 503
        assert error_labels(metrics) == {"read a session": 4}
        assert calls(metrics, "read a session") == 3

        backend.failing = False
        text = (await client.get("/metrics")).text
    assert 'session_store_errors_total{operation="read a session"} 4.0' in text
    assert f'{DURATION}_count{{operation="read a session"}} 3.0' in text
    assert f'{DURATION}_count{{operation="create a session"}} 1.0' in text
    assert "sessions_created_total 1.0" in text


@pytest.mark.anyio
async def test_prometheus_labels_a_timeout_by_its_operation() -> None:
    metrics = SessionMetrics()
    backend = SlowBackend()
    app = Starlette(
        routes=[Route("/", prometheus_metrics.index)],
        middleware=[
            Middleware(SessionMiddleware, secret_key="s", backend=backend, store_timeout=0.05, events=metrics)
        ],
    )
    async with client_for(app) as client:
        await client.get("/")
        backend.slow = True
        assert (await client.get("/")).status_code == 503
    assert error_labels(metrics) == {"read a session": 1}


def test_operation_label_keeps_the_operation_only() -> None:
    assert operation_label("read a session") == "read a session"
    assert operation_label(None) == "unknown"
    assert operation_label("update a user's session index") == "update a user's session index"
    assert operation_label(None) == "unknown"


@pytest.mark.anyio
async def test_metrics_are_served_without_a_session() -> None:
    backend = MemoryBackend()
    app = prometheus_metrics.create_app(backend=backend)
    async with client_for(app) as client:
        await client.get("/")
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    assert "set-cookie" not in response.headers
    assert "sessions_created_total 1.0" in response.text
    assert f'{DURATION}_count{{operation="read a session"}}' not in response.text  # /metrics read none


# -- OpenTelemetry -----------------------------------------------------------------------------


def traced() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def check_span(span: ReadableSpan, backend: str) -> None:
    assert span.kind is SpanKind.CLIENT
    attributes = dict(span.attributes or {})
    assert attributes["session.backend"] == backend
    assert span.name == f"session.store {attributes['session.operation']}"
    duration = attributes["session.duration_s"]
    assert isinstance(duration, float)
    assert duration >= 0
    assert span.start_time is not None
    assert span.end_time is not None
    assert span.end_time - span.start_time == round(duration * 1e9)


@pytest.mark.anyio
async def test_otel_records_a_span_per_store_call(tmp_path: Path) -> None:
    provider, exporter = traced()
    app = otel_tracing.create_app(provider, backend=FileBackend(tmp_path / "sessions"))
    async with client_for(app) as client:
        assert (await client.get("/")).json() == {"count": 1}
        assert (await client.get("/")).json() == {"count": 2}
        assert (await client.get("/logout")).json() == {"count": 0}
    spans = exporter.get_finished_spans()
    assert [span.name for span in spans] == [
        "session.store create a session",
        "session.store read a session",
        "session.store save a session",
        "session.store read a session",
        "session.store remove a session",
    ]
    for span in spans:
        check_span(span, "file")
    # Recorded after the call returned, the spans still follow each other in time.
    assert all(
        first.end_time is not None and second.start_time is not None and first.end_time <= second.start_time
        for first, second in itertools.pairwise(spans)
    )


@pytest.mark.anyio
async def test_otel_store_spans_are_children_of_the_request_span() -> None:
    provider, exporter = traced()
    app = otel_tracing.create_app(provider)
    async with client_for(app) as client:
        with provider.get_tracer("test").start_as_current_span("GET /") as request_span:
            await client.get("/")
    store_span, outer = exporter.get_finished_spans()
    assert outer.name == "GET /"
    assert store_span.name == "session.store create a session"
    assert store_span.parent is not None
    assert store_span.parent.span_id == request_span.get_span_context().span_id
    assert store_span.context is not None
    assert store_span.context.trace_id == request_span.get_span_context().trace_id


@pytest.mark.anyio
async def test_otel_times_a_failed_store_call() -> None:
    provider, exporter = traced()
    backend = FailingBackend()
    app = otel_tracing.create_app(provider, backend=backend)
    async with client_for(app) as client:
        await client.get("/")
        backend.failing = True
        assert (await client.get("/")).status_code == 503
    names = [span.name for span in exporter.get_finished_spans()]
    assert names == ["session.store create a session", "session.store read a session"]


# -- an observer that fails ------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_observer_that_raises_is_logged_and_the_request_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    def broken(event: SessionEvent) -> None:
        seen.append(event.type)
        raise RuntimeError("observer bug")

    async def index(request: Request) -> JSONResponse:
        request.session["count"] = int(request.session.get("count", 0)) + 1
        return JSONResponse({"count": request.session["count"]})

    app = Starlette(
        routes=[Route("/", index)],
        middleware=[Middleware(SessionMiddleware, secret_key="s", backend=MemoryBackend(), events=broken)],
    )
    with caplog.at_level(logging.ERROR, logger="starlette_session"):
        async with client_for(app) as client:
            first = await client.get("/")
            second = await client.get("/")
    assert (first.status_code, first.json()) == (200, {"count": 1})
    assert (second.status_code, second.json()) == (200, {"count": 2})  # the session was saved
    assert seen == ["store_call", "created", "store_call", "loaded", "store_call", "saved"]
    logged = [record for record in caplog.records if "observer raised" in record.getMessage()]
    assert len(logged) == len(seen)
    assert all(record.exc_info is not None for record in logged)
    assert "'created' event" in logged[1].getMessage()
