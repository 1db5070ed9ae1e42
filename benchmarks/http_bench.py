"""The HTTP benchmark: each contender behind uvicorn (1 worker), loaded by ``wrk`` on 127.0.0.1.

For each contender: start ``python -m benchmarks.serve`` on a free port, create a session with
one ``GET /seed``, then run ``wrk -t THREADS -c CONNECTIONS -d SECONDS`` against ``/read`` with
that session's cookie, after a short warm-up run. The contenders take turns, twice, and the
two runs are averaged. Reported: requests per second and latency percentiles as wrk prints
them, and the count of non-2xx answers and socket errors (which must be 0).
"""

from __future__ import annotations

import http.client
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from benchmarks.contenders import Stores
from benchmarks.suite import cookie_from_set_cookie

HOST = "127.0.0.1"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class WrkSettings:
    """How hard and how long wrk pushes each contender."""

    seconds: int = 5
    warmup_seconds: int = 1
    connections: int = 64
    threads: int = 2
    rounds: int = 2


def wrk_path() -> str:
    """Return the wrk binary.

    Raises:
        RuntimeError: wrk is not installed.
    """
    path = shutil.which("wrk")
    if path is None:
        raise RuntimeError("wrk is not installed: apt-get install wrk (scripts/bench.sh does it as root)")
    return path


@dataclass(frozen=True)
class Served:
    """One HTTP contender: a label, the contender served, and the thread count of the package's
    sync bridge (``None``: the package's own)."""

    label: str
    contender: str
    bridge_threads: int | None = None


@contextmanager
def serve(contender: str, stores: Stores, bridge_threads: int | None = None) -> Iterator[int]:
    """Run ``benchmarks.serve`` for ``contender`` and yield its port once it answers."""
    argv = [sys.executable, "-m", "benchmarks.serve", contender, "--workdir", str(stores.workdir)]
    if bridge_threads is not None:
        argv += ["--bridge-threads", str(bridge_threads)]
    if stores.redis_url:
        argv += ["--redis-url", stores.redis_url]
    if stores.memcached:
        argv += ["--memcached", f"{stores.memcached[0]}:{stores.memcached[1]}"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError(f"{contender}: server did not start (said {line!r})")
        yield int(line)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def seed_cookie(port: int, timeout: float = 20.0) -> str | None:
    """``GET /seed`` (retrying until the server listens) and return the session's ``name=value``."""
    deadline = time.monotonic() + timeout
    while True:
        connection = http.client.HTTPConnection(HOST, port, timeout=5)
        try:
            connection.request("GET", "/seed")
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"/seed answered {response.status}")
            return cookie_from_set_cookie(response.headers.get_all("set-cookie") or [])
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        finally:
            connection.close()


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> dict[str, float]:
    """Return requests/s, latency percentiles (ms) and error counts from wrk's ``--latency`` output.

    Raises:
        ValueError: the output has no ``Requests/sec`` line.
    """
    result: dict[str, float] = {}
    match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if match is None:
        raise ValueError(f"no Requests/sec in wrk output:\n{output}")
    result["requests_per_s"] = float(match.group(1))
    for percentile in ("50", "90", "99"):
        found = re.search(rf"^\s+{percentile}%\s+(\S+)", output, re.MULTILINE)
        if found:
            result[f"latency_p{percentile}_ms"] = round(_duration_ms(found.group(1)), 3)
    match = re.search(r"(\d+) requests in", output)
    result["requests"] = float(match.group(1)) if match else 0.0
    match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result["non_2xx"] = float(match.group(1)) if match else 0.0
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    result["socket_errors"] = float(sum(int(n) for n in match.groups())) if match else 0.0
    return result


def run_wrk(
    port: int, path: str, cookie: str | None, seconds: int, settings: WrkSettings
) -> dict[str, float]:
    """Run wrk once against ``http://127.0.0.1:port/path`` and return ``parse_wrk``'s numbers."""
    argv = [
        wrk_path(),
        "-t",
        str(settings.threads),
        "-c",
        str(settings.connections),
        "-d",
        f"{seconds}s",
        "--latency",
    ]
    if cookie is not None:
        argv += ["-H", f"Cookie: {cookie}"]
    argv.append(f"http://{HOST}:{port}{path}")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    return parse_wrk(done.stdout)


def run_http(contenders: Sequence[Served], stores: Stores, settings: WrkSettings) -> dict[str, Any]:
    """Serve and load each contender in turn, ``settings.rounds`` times (taking turns).

    Returns:
        ``{label: wrk numbers averaged over the rounds, plus "rounds_requests_per_s"}``.
    """
    runs: dict[str, list[dict[str, float]]] = {item.label: [] for item in contenders}
    for _ in range(settings.rounds):
        for item in contenders:
            with serve(item.contender, stores, item.bridge_threads) as port:
                cookie = seed_cookie(port)
                run_wrk(port, "/read", cookie, settings.warmup_seconds, settings)
                runs[item.label].append(run_wrk(port, "/read", cookie, settings.seconds, settings))
            rate = runs[item.label][-1]["requests_per_s"]
            print(f"  http {item.label:34} {rate:9.0f} req/s", flush=True)
    results: dict[str, Any] = {}
    for label, numbers in runs.items():
        merged: dict[str, Any] = {
            key: round(statistics.fmean(run[key] for run in numbers), 3)
            for key in numbers[0]
            if key not in ("non_2xx", "socket_errors", "requests")
        }
        for key in ("non_2xx", "socket_errors", "requests"):
            merged[key] = sum(run.get(key, 0.0) for run in numbers)
        merged["rounds_requests_per_s"] = [run["requests_per_s"] for run in numbers]
        results[label] = merged
    return results
