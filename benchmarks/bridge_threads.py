"""How many threads should the sync bridge have? ``ours-redis-sync-threads`` with ``MAX_THREADS`` in turn.

(``ours-redis-sync-threads`` is ``redis.Redis`` with ``asyncio_twin=False``: the default
``ours-redis-sync`` sends its commands through the asyncio twin, never through the bridge.)

    .venv-bench/bin/python -m benchmarks.bridge_threads [--threads 8 16 40] [--rounds 3] [--no-http]
                                                        [--latency-ms 1.3] [--output FILE]

``starlette_session._bridge`` runs blocking client calls in up to ``MAX_THREADS`` worker
threads of its own under asyncio. This script sets that module attribute (and drops the
pool, so the next call makes one of the new size); the package's files are not changed. For
each thread count, taking turns ``--rounds`` times:

* the in-process read, one request at a time, median µs (Redis on loopback);
* 64 concurrent in-process reads, req/s, on loopback and through the latency proxy (1.3 ms);
* ``GET /read`` under uvicorn + ``wrk -t2 -c64 -d5s``, req/s, with ``starsessions-redis`` in
  the same turns as the reference; the ratio is the median of the ratios within each turn.

Prints a Markdown table (every round's value, then the median) and writes
``benchmarks/results/bridge_threads.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.contenders import CONTENDERS, Stores
from benchmarks.harness import Budget, time_concurrent, time_sequential
from benchmarks.suite import CONCURRENCY, CONCURRENT, WORKLOADS, Built, build

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "benchmarks" / "results" / "bridge_threads.json"
DEFAULT_LATENCY_MS = 1.3
CONTENDER = "ours-redis-sync-threads"
REFERENCE = "starsessions-redis"

SEQUENTIAL = Budget(warmup=100, iterations=2000, min_iterations=100, seconds=0.35)
CONCURRENT_DIRECT = Budget(warmup=256, iterations=50_000, min_iterations=512, seconds=0.5)
CONCURRENT_SLOW = Budget(warmup=128, iterations=50_000, min_iterations=512, seconds=1.0)


def set_bridge_threads(threads: int) -> None:
    """Make the package's sync bridge use a pool of ``threads`` threads from its next call on."""
    from starlette_session import _bridge  # noqa: PLC0415

    with _bridge._workers_lock:  # the benchmark pokes at the bridge on purpose
        old = _bridge._workers
        _bridge.MAX_THREADS = threads
        _bridge._workers = None
    if old is not None:
        old.close()


async def _inprocess(
    direct: Built, slow: Built, threads: Sequence[int], rounds: int, latency_ms: float
) -> dict[int, dict[str, list[float]]]:
    read = WORKLOADS[0]
    results: dict[int, dict[str, list[float]]] = {
        n: {"read_us": [], "c64_direct": [], "c64_slow": []} for n in threads
    }
    for round_no in range(rounds):
        for n in threads:
            set_bridge_threads(n)
            timing = await time_sequential(direct.caller(read), SEQUENTIAL)
            fast = await time_concurrent(direct.caller(CONCURRENT), CONCURRENCY, CONCURRENT_DIRECT)
            delayed = await time_concurrent(slow.caller(CONCURRENT), CONCURRENCY, CONCURRENT_SLOW)
            row = results[n]
            row["read_us"].append(round(timing.median_us, 1))
            row["c64_direct"].append(round(fast.per_second))
            row["c64_slow"].append(round(delayed.per_second))
            print(
                f"  round {round_no + 1} threads {n:2}: read {timing.median_us:7.1f} µs, "
                f"c64 {fast.per_second:6.0f}/s, c64 at {latency_ms} ms {delayed.per_second:6.0f}/s",
                flush=True,
            )
    return results


async def _build_pair(stack: contextlib.AsyncExitStack, stores: Stores, slow: Stores) -> tuple[Built, Built]:
    contender = CONTENDERS[CONTENDER]
    return await build(stack, contender, stores), await build(stack, contender, slow)


async def _run_inprocess(
    stores: Stores, slow: Stores, threads: Sequence[int], rounds: int, latency_ms: float
) -> dict[int, dict[str, list[float]]]:
    async with contextlib.AsyncExitStack() as stack:
        direct, delayed = await _build_pair(stack, stores, slow)
        return await _inprocess(direct, delayed, threads, rounds, latency_ms)


def _median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _cell(values: Sequence[float], digits: int = 0) -> str:
    rounds = " / ".join(f"{v:,.{digits}f}" for v in values)
    return f"**{_median(values):,.{digits}f}** ({rounds})"


def render(results: dict[str, Any]) -> str:
    """Return the Markdown table of a run of this script."""
    latency = results.get("latency_ms", DEFAULT_LATENCY_MS)
    lines = [
        "| threads | read, median µs | 64 concurrent reads, req/s "
        f"| same, store {latency} ms away, req/s | HTTP req/s | HTTP ÷ starsessions |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    http: dict[str, list[float]] = results.get("http", {})
    reference = http.get(REFERENCE)
    for n_text, row in results["inprocess"].items():
        rates = http.get(f"threads={n_text}")
        http_cell = _cell(rates) if rates else "-"
        ratio = "-"
        if rates and reference:
            ratios = [rate / ref for rate, ref in zip(rates, reference, strict=True)]
            ratio = _cell(ratios, 2)
        lines.append(
            f"| {n_text} | {_cell(row['read_us'], 1)} | {_cell(row['c64_direct'])} "
            f"| {_cell(row['c64_slow'])} | {http_cell} | {ratio} |"
        )
    if reference:
        lines.append(f"| {REFERENCE} | | | | {_cell(reference)} | 1.00 |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--threads", type=int, nargs="+", default=[8, 16, 40])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-http", action="store_true")
    parser.add_argument("--latency-ms", type=float, default=DEFAULT_LATENCY_MS)
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(ROOT))
    from benchmarks.http_bench import Served, WrkSettings, run_http  # noqa: PLC0415
    from benchmarks.latency_proxy import start_latency_proxy  # noqa: PLC0415
    from benchmarks.suite import redis_address  # noqa: PLC0415
    from tests.servers import start_redis  # noqa: PLC0415

    results: dict[str, Any] = {"threads": args.threads, "rounds": args.rounds, "latency_ms": args.latency_ms}
    with tempfile.TemporaryDirectory(prefix="starlette-session-bench-") as tmp, start_redis() as url:
        stores = Stores(workdir=Path(tmp), redis_url=url)
        with start_latency_proxy(redis_address(url), args.latency_ms) as proxy:
            slow = Stores(workdir=Path(tmp), redis_url=f"redis://{proxy[0]}:{proxy[1]}/0")
            print("in-process:", flush=True)
            inprocess = asyncio.run(_run_inprocess(stores, slow, args.threads, args.rounds, args.latency_ms))
        results["inprocess"] = {str(n): row for n, row in inprocess.items()}
        if not args.no_http:
            print("HTTP (uvicorn + wrk):", flush=True)
            served = [Served(f"threads={n}", CONTENDER, bridge_threads=n) for n in args.threads]
            served.append(Served(REFERENCE, REFERENCE))
            http = run_http(served, stores, WrkSettings(rounds=args.rounds))
            results["http"] = {label: data["rounds_requests_per_s"] for label, data in http.items()}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(render(results))
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
