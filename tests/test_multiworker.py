"""End to end: uvicorn with two worker processes shares sessions through Redis or files.

uvicorn serves ``tests/e2e_app.py`` on 127.0.0.1 with ``--workers 2``; every request opens a
new connection, so the kernel hands requests to either worker. The test goes on until it has
seen both PIDs, then checks that each worker reads and changes what the other wrote.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import HOST, serve_uvicorn

MAX_ATTEMPTS = 200

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def serve(backend: str, location: str, log_path: Path) -> Iterator[str]:
    """Run ``uvicorn tests.e2e_app:app --workers 2``; yield its base URL."""
    env = {**os.environ, "E2E_BACKEND": backend, "E2E_LOCATION": location}
    with serve_uvicorn("tests.e2e_app:app", log_path, "--workers", "2", env=env) as port:
        yield f"http://{HOST}:{port}"


def call(base_url: str, path: str, cookie: str | None) -> tuple[dict[str, Any], httpx.Response]:
    """One request on a new connection, sending ``cookie`` (``name=value``) if given."""
    headers = {"Connection": "close"}
    if cookie is not None:
        headers["Cookie"] = cookie
    with httpx.Client(timeout=10.0) as client:
        response = client.get(f"{base_url}{path}", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body, response


def session_cookie(response: httpx.Response) -> str:
    values = response.headers.get_list("set-cookie")
    assert len(values) == 1, values
    pair = values[0].split(";", 1)[0]
    assert pair.startswith("session="), pair
    return pair


def check_shared_sessions(base_url: str) -> None:
    body, response = call(base_url, "/incr", None)
    assert body["count"] == 1
    cookie = session_cookie(response)
    history = [(body["pid"], body["count"])]
    for _ in range(MAX_ATTEMPTS):
        if len({pid for pid, _ in history}) == 2:
            break
        body, _ = call(base_url, "/incr", cookie)
        history.append((body["pid"], body["count"]))
    pids = {pid for pid, _ in history}
    assert len(pids) == 2, f"only worker {pids} answered in {MAX_ATTEMPTS} requests"
    # Every increment saw the one before it, whichever worker made it.
    assert [count for _, count in history] == list(range(1, len(history) + 1)), history
    handovers = [(a, b) for (a, _), (b, _) in itertools.pairwise(history) if a != b]
    assert handovers, history

    # Both workers read the same session.
    expected = len(history)
    seen: set[int] = set()
    for _ in range(MAX_ATTEMPTS):
        body, _ = call(base_url, "/read", cookie)
        assert body["count"] == expected, body
        seen.add(body["pid"])
        if seen == pids:
            break
    assert seen == pids

    # One worker clears it; the other, sent the old cookie, finds nothing.
    body, response = call(base_url, "/clear", cookie)
    cleared_by = body["pid"]
    assert "session=null" in response.headers["set-cookie"]
    other = None
    for _ in range(MAX_ATTEMPTS):
        body, _ = call(base_url, "/read", cookie)
        assert body["session"] == {}, body
        if body["pid"] != cleared_by:
            other = body["pid"]
            break
    assert other is not None, f"worker {cleared_by} answered every request after the clear"

    # The stale cookie now starts a fresh session, in either worker.
    body, _ = call(base_url, "/incr", cookie)
    assert body["count"] == 1


def test_two_workers_share_redis_sessions(redis_url: str, tmp_path: Path) -> None:
    with serve("redis", redis_url, tmp_path / "uvicorn.log") as base_url:
        check_shared_sessions(base_url)


def test_two_workers_share_file_sessions(tmp_path: Path) -> None:
    directory = tmp_path / "sessions"
    with serve("file", str(directory), tmp_path / "uvicorn.log") as base_url:
        check_shared_sessions(base_url)
    # The session written through the workers is on disk; the cleared one is gone.
    assert len(list(directory.glob("session-*"))) == 1
