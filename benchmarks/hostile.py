"""What hostile input costs: each hostile request against a normal request, in the same run.

Issue 10 asks that every hostile input gets a 200 with an empty session "at a cost within a
small constant of a normal request". Measured in-process (no HTTP), one request at a time, for:

* a normal read of a signed cookie session (the yardstick), and of a server-side session;
* an 8 KB quoted cookie of backslashes next to ours (CVE-2024-7592: ``http.cookies`` unquotes it
  in quadratic time before CPython 3.11.10 / 3.12.6), through our middleware and, for
  comparison, through Starlette's own (which hands every cookie to ``http.cookies``);
* ``chunks.`` followed by 5,000 digits;
* a validly signed cookie holding 50,000 nested ``[``;
* a server-side record of 100,000 nested ``[`` under a live id (memory backend).

Part of the benchmark command (``bash scripts/bench.sh``); alone: ``python -m benchmarks.hostile``
(prints a table; ``--json`` for the raw figures).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from collections.abc import Sequence
from typing import Any

import itsdangerous
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware as StarletteSessionMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from benchmarks.harness import Budget, Caller, time_sequential
from starlette_session import SessionMiddleware
from starlette_session.backends.memory import MemoryBackend

SECRET = "hostile-benchmark-secret"
#: The budgets of a quick and a full run.
QUICK = Budget(warmup=20, iterations=200, min_iterations=30, seconds=0.3)
FULL = Budget(warmup=50, iterations=1000, min_iterations=50, seconds=1.0)
BACKSLASHES = 'x="' + "\\" * 8_000 + '"'


async def read(request: Request) -> Response:
    return PlainTextResponse(str(len(request.session)))


def _app(middleware: Any, **options: Any) -> Starlette:
    return Starlette(
        routes=[Route("/read", read)], middleware=[Middleware(middleware, secret_key=SECRET, **options)]
    )


def _signed(payload: bytes) -> str:
    return itsdangerous.TimestampSigner(SECRET).sign(base64.b64encode(payload)).decode()


async def measure(budget: Budget) -> dict[str, dict[str, float]]:
    """Return the timing summary of each case, keyed by its label."""
    ours = _app(SessionMiddleware)
    theirs = _app(StarletteSessionMiddleware)
    store = MemoryBackend()
    server = _app(SessionMiddleware, backend=store)
    good = _signed(json.dumps({"user": "ann", "n": 1}).encode())
    public = "hostile-benchmark-session-0001"
    await store.write(store.key_for(public), json.dumps({"user": "ann"}).encode(), 3600)
    nested_id = "hostile-benchmark-session-0002"
    await store.write(store.key_for(nested_id), b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 3600)
    cases: list[tuple[str, Any, str]] = [
        ("normal signed cookie read (ours)", ours, f"session={good}"),
        ("normal signed cookie read (Starlette)", theirs, f"session={good}"),
        ("8 KB backslash cookie + ours (ours)", ours, f"{BACKSLASHES}; session={good}"),
        ("8 KB backslash cookie + ours (Starlette)", theirs, f"{BACKSLASHES}; session={good}"),
        ("chunks. + 5,000 digits (ours)", ours, "session=chunks." + "9" * 5_000),
        (
            "signed cookie of 50,000 nested [ (ours)",
            ours,
            "session=" + _signed(b"[" * 50_000 + b"]" * 50_000),
        ),
        (
            "normal server-side read (ours, memory)",
            server,
            "session=" + _signed(json.dumps({"_cssid": public}).encode()),
        ),
        (
            "record of 100,000 nested [ (ours, memory)",
            server,
            "session=" + _signed(json.dumps({"_cssid": nested_id}).encode()),
        ),
    ]
    results: dict[str, dict[str, float]] = {}
    for label, app, cookie in cases:
        results[label] = (await time_sequential(Caller(app, "/read", cookie), budget)).summary()
    return results


def _table(results: dict[str, dict[str, float]]) -> str:
    base = results["normal signed cookie read (ours)"]["median_us"]
    lines = [
        f"Python {sys.version.split()[0]}",
        "| case | median µs | p90 µs | ÷ normal cookie read (ours) |",
        "|---|---:|---:|---:|",
    ]
    for label, summary in results.items():
        ratio = summary["median_us"] / base
        lines.append(f"| {label} | {summary['median_us']:.1f} | {summary['p90_us']:.1f} | {ratio:.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the hostile-input benchmark and print its table (or JSON)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.hostile", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    args = parser.parse_args(argv)
    results = asyncio.run(measure(QUICK if args.quick else FULL))
    print(json.dumps(results, indent=2) if args.json else _table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
