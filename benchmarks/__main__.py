"""``python -m benchmarks``: the whole benchmark in one run (``scripts/bench.sh`` sets it up).

Subcommands:

* ``run`` (the default): start Redis and memcached on free loopback ports, then measure the
  in-process workloads on every contender, the store round trips, our read against each
  store's bare client call (and with ``hash_ids=False``), the costs of
  ``concurrency="merge"`` and of ``user_key``, the 1.3 ms store latency variant, store outages
  behind a cuttable proxy (``benchmarks/outage.py``, with PostgreSQL too when it is installed)
  and the HTTP benchmark; run the Starlette 0.52 comparison in its own venv (``--compat-python``); print the
  tables, write ``benchmarks/results/latest.json`` (and ``latest.md``), and, unless ``--quick``,
  the chart ``docs/img/benchmarks.png`` and the generated part of ``docs/benchmarks.md``.
* ``compat``: the in-process cookie workloads only (bare, Starlette, ours-cookie), as JSON on
  stdout; ``run`` starts it with the Starlette 0.52 venv's Python.
* ``profile CONTENDER WORKLOAD``: a pyinstrument profile of one contender's workload.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import report
from benchmarks.contenders import CONTENDERS, SESSION_BYTES, Stores, have_043
from benchmarks.harness import Budget, Caller, time_sequential
from benchmarks.http_bench import WrkSettings
from benchmarks.outage import Settings as OutageSettings
from benchmarks.suite import CONCURRENT, WORKLOADS, Built, build, run_concurrent, run_workloads

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CHART = ROOT / "docs" / "img" / "benchmarks.png"
DOCS = ROOT / "docs" / "benchmarks.md"
LATENCY_MS = 1.3

LATENCY_CONTENDERS = (
    "ours-redis-sync",
    "ours-redis-sync-threads",
    "ours-redis-async",
    "ours-memcache",
    "ours-memcache-pooled",
    "ours-aiomemcache",
    "ours-aiomemcache-pool64",
    "starsessions-redis",
    "0.4.3-redis-sync",
)
HTTP_CONTENDERS = (
    "bare",
    "starlette",
    "ours-cookie",
    "ours-redis-sync",
    "ours-redis-sync-threads",
    "ours-redis-async",
    "starsessions-redis",
)
COMPAT_CONTENDERS = ("bare", "starlette", "ours-cookie")
VERSIONED_PACKAGES = (
    "starlette",
    "itsdangerous",
    "anyio",
    "redis",
    "pymemcache",
    "aiomcache",
    "SQLAlchemy",
    "aiosqlite",
    "psycopg",
    "asyncpg",
    "starsessions",
    "uvicorn",
    "uvloop",
    "httptools",
    "matplotlib",
)


@dataclass(frozen=True)
class Plan:
    """Iteration counts and time budgets of one run."""

    sequential: Budget
    rounds: int
    concurrent: Budget
    concurrent_rounds: int
    roundtrip_requests: int
    latency_sequential: Budget
    latency_concurrent: Budget
    latency_rounds: int
    wrk: WrkSettings = field(default_factory=WrkSettings)
    outage: OutageSettings = field(default_factory=OutageSettings)


FULL = Plan(
    sequential=Budget(warmup=100, iterations=2000, min_iterations=100, seconds=0.35),
    rounds=3,
    concurrent=Budget(warmup=256, iterations=50_000, min_iterations=512, seconds=0.5),
    concurrent_rounds=2,
    roundtrip_requests=50,
    latency_sequential=Budget(warmup=20, iterations=400, min_iterations=50, seconds=0.3),
    latency_concurrent=Budget(warmup=128, iterations=50_000, min_iterations=512, seconds=1.0),
    latency_rounds=2,
)
QUICK = Plan(
    sequential=Budget(warmup=20, iterations=200, min_iterations=20, seconds=0.05),
    rounds=1,
    concurrent=Budget(warmup=64, iterations=512, min_iterations=512, seconds=0.1),
    concurrent_rounds=1,
    roundtrip_requests=10,
    latency_sequential=Budget(warmup=5, iterations=50, min_iterations=10, seconds=0.05),
    latency_concurrent=Budget(warmup=64, iterations=512, min_iterations=512, seconds=0.1),
    latency_rounds=1,
    wrk=WrkSettings(seconds=1, warmup_seconds=1, rounds=1),
    outage=OutageSettings(requests=50, concurrency=16),
)


def _log(message: str) -> None:
    print(message, flush=True)


def available(names: Sequence[str]) -> list[str]:
    """Return the contenders among ``names`` whose libraries are installed here."""
    result = []
    for name in names:
        if name.startswith("starsessions") and importlib.util.find_spec("starsessions") is None:
            _log(f"  skipping {name}: starsessions is not installed")
            continue
        if name.startswith("0.4.3") and not have_043():
            _log(f"  skipping {name}: starlette-session 0.4.3 is not unpacked (scripts/bench.sh does it)")
            continue
        result.append(name)
    return result


# -- metadata -----------------------------------------------------------------------------------------


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def _command_output(argv: Sequence[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    done = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ROOT)
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else None


def _wrk_version() -> str | None:
    line = _command_output(["wrk", "-v"])  # "wrk debian/4.1.0-3+b2 [epoll] Copyright ..."
    found = re.search(r"\d+\.\d+(\.\d+)?", line or "")
    return found.group(0) if found else line


def collect_meta(stores: Stores | None) -> dict[str, Any]:
    """Versions, machine and date of this run."""
    meta: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "package_version": _version("starlette-session"),
        "git_commit": _command_output(["git", "rev-parse", "--short", "HEAD"]),
        "git_dirty": bool(_command_output(["git", "status", "--porcelain", "--untracked-files=no"])),
        "postgres_server": (_command_output(["pg_config", "--version"]) or "").removeprefix("PostgreSQL ")
        or None,
        "sqlite": sqlite3.sqlite_version,
        "wrk": _wrk_version(),
        "session_bytes": SESSION_BYTES,
    }
    for package in VERSIONED_PACKAGES:
        meta[package.lower()] = _version(package)
    if stores is not None:
        from benchmarks.store_stats import memcached_version, redis_server_version  # noqa: PLC0415
        from benchmarks.suite import redis_address  # noqa: PLC0415

        meta["redis_server"] = redis_server_version(redis_address(stores.need_redis()))
        meta["memcached_server"] = memcached_version(stores.need_memcached())
    return meta


# -- phases --------------------------------------------------------------------------------------------


async def _build_all(stack: contextlib.AsyncExitStack, names: Sequence[str], stores: Stores) -> list[Built]:
    return [await build(stack, CONTENDERS[name], stores) for name in names]


async def inprocess_phase(stores: Stores, names: Sequence[str], plan: Plan, count: bool) -> dict[str, Any]:
    """Every workload on every contender; then store round trips when ``count``."""
    from benchmarks.suite import count_round_trips  # noqa: PLC0415

    async with contextlib.AsyncExitStack() as stack:
        built = await _build_all(stack, names, stores)
        inprocess: dict[str, Any] = dict(await run_workloads(built, WORKLOADS, plan.sequential, plan.rounds))
        inprocess["read-c64"] = await run_concurrent(built, plan.concurrent, plan.concurrent_rounds)
        result: dict[str, Any] = {"inprocess": inprocess}
        if count:
            result["roundtrips"] = await count_round_trips(built, stores, WORKLOADS, plan.roundtrip_requests)
    return result


async def floors_phase(stores: Stores, plan: Plan) -> dict[str, Any]:
    """Our read against the bare client call of each backend (``benchmarks/floors.py``).

    The package at ``benchmarks.baseline.BASELINE_COMMIT`` is measured beside ours when this
    clone's history has it; otherwise the phase says why and goes on without it.
    """
    from benchmarks import baseline  # noqa: PLC0415
    from benchmarks.floors import FLOOR_BACKENDS, floor_phase  # noqa: PLC0415

    why_not = baseline.prepare()
    if why_not is not None:
        print(f"  no baseline: {why_not}")
    package = None if why_not is not None else baseline.load()
    async with contextlib.AsyncExitStack() as stack:
        return await floor_phase(
            stack, stores, FLOOR_BACKENDS, plan.sequential, plan.rounds, baseline=package
        )


async def latency_phase(slow: Stores, names: Sequence[str], plan: Plan) -> dict[str, Any]:
    """Reads, one at a time and 64 at once, with every store command delayed."""
    read = WORKLOADS[0]
    async with contextlib.AsyncExitStack() as stack:
        built = await _build_all(stack, names, slow)
        sequential = await run_workloads(built, [read], plan.latency_sequential, plan.latency_rounds)
        concurrent = await run_concurrent(built, plan.latency_concurrent, plan.latency_rounds)
    return {"read": sequential[read.name], "read-c64": concurrent}


async def merge_phase(stores: Stores, plan: Plan) -> dict[str, Any]:
    """The write on each merge-capable backend in both modes, taking turns; then the round trips."""
    from benchmarks.contenders import MERGE_BACKENDS, MERGE_CONTENDERS, MERGE_SUFFIX  # noqa: PLC0415
    from benchmarks.suite import count_round_trips  # noqa: PLC0415

    workloads = [w for w in WORKLOADS if w.name in ("read", "write", "new")]
    write = next(w for w in workloads if w.name == "write")
    async with contextlib.AsyncExitStack() as stack:
        built = []
        for name in MERGE_BACKENDS:
            built.append(await build(stack, CONTENDERS[name], stores))
            built.append(await build(stack, MERGE_CONTENDERS[name + MERGE_SUFFIX], stores))
        timings = await run_workloads(built, [write], plan.sequential, plan.rounds)
        counts = await count_round_trips(built, stores, workloads, plan.roundtrip_requests)
    return {"backends": list(MERGE_BACKENDS), "write": timings["write"], "roundtrips": counts}


async def user_key_phase(stores: Stores, plan: Plan) -> dict[str, Any]:
    """Read, write and a login on each backend with and without ``user_key``, taking turns; then the
    store commands (Redis, memcached: the servers' counters) or backend calls (files, memory)."""
    from benchmarks.contenders import USER_KEY, USER_KEY_BACKENDS, USER_KEY_CONTENDERS, USER_KEY_SUFFIX  # noqa: PLC0415
    from benchmarks.suite import USER_KEY_WORKLOADS, count_backend_calls, count_round_trips  # noqa: PLC0415

    async with contextlib.AsyncExitStack() as stack:
        built = []
        for name in USER_KEY_BACKENDS:
            built.append(await build(stack, CONTENDERS[name], stores))
            built.append(await build(stack, USER_KEY_CONTENDERS[name + USER_KEY_SUFFIX], stores))
        # The seeded sessions' last-seen time is minutes younger than last_seen_interval, so the
        # reads below refresh nothing: what a read costs between two refreshes.
        timings = await run_workloads(built, USER_KEY_WORKLOADS, plan.sequential, plan.rounds)
        requests = plan.roundtrip_requests
        counts = await count_round_trips(built, stores, USER_KEY_WORKLOADS, requests)
        local = [item for item in built if item.contender.store not in ("redis", "memcached")]
        calls = await count_backend_calls(local, USER_KEY_WORKLOADS, requests)
    return {
        "user_key": USER_KEY,
        "backends": list(USER_KEY_BACKENDS),
        "workloads": {w.name: w.description for w in USER_KEY_WORKLOADS},
        "timings": timings,
        "roundtrips": counts,
        "backend_calls": calls,
    }


def compat_phase(python: Path, quick: bool) -> dict[str, Any] | None:
    """Run ``compat`` with another venv's Python (Starlette 0.52) and return its results."""
    if not python.exists():
        _log(f"  skipping the Starlette 0.52 comparison: {python} does not exist")
        return None
    argv = [str(python), "-m", "benchmarks", "compat", *(["--quick"] if quick else [])]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False, timeout=600)
    if done.returncode != 0:
        _log(f"  the Starlette 0.52 comparison failed:\n{done.stderr}")
        return None
    data: dict[str, Any] = json.loads(done.stdout)
    return data


@contextlib.contextmanager
def _servers() -> Iterator[tuple[str, tuple[str, int]]]:
    # tests/servers.py starts and stops real servers; it imports pytest, which the bench venv has.
    sys.path.insert(0, str(ROOT))
    from tests.servers import start_memcached, start_redis  # noqa: PLC0415

    with start_redis() as redis_url, start_memcached() as memcached:
        yield redis_url, memcached


def run(args: argparse.Namespace) -> int:
    """The whole benchmark; see the module docstring."""
    from benchmarks.http_bench import Served, run_http  # noqa: PLC0415
    from benchmarks.latency_proxy import start_latency_proxy  # noqa: PLC0415
    from benchmarks.suite import measure_rtt_ms, redis_address  # noqa: PLC0415

    plan = QUICK if args.quick else FULL
    started = time.monotonic()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="starlette-session-bench-") as tmp, _servers() as (url, mc):
        stores = Stores(workdir=Path(tmp), redis_url=url, memcached=mc)
        results["meta"] = collect_meta(stores)
        results["meta"]["plan"] = "quick" if args.quick else "full"
        _log(f"redis {url}, memcached {mc[0]}:{mc[1]}, workdir {tmp}")
        _log("in-process workloads (median µs per request):")
        names = available(list(CONTENDERS))
        results.update(asyncio.run(inprocess_phase(stores, names, plan, count=True)))
        _log("our read against the bare client call, and with hash_ids=False (median µs):")
        results["floors"] = asyncio.run(floors_phase(stores, plan))
        _log("Python function calls per read (cProfile):")
        from benchmarks import call_counts  # noqa: PLC0415
        from benchmarks.floors import FLOOR_BACKENDS  # noqa: PLC0415

        counted = asyncio.run(call_counts.measure(stores, FLOOR_BACKENDS, requests=50 if args.quick else 500))
        results["call_counts"] = {name: {"read": ours, "bare": bare} for name, ours, bare, _ in counted}
        for name, ours, bare, extra in counted:
            _log(
                f"  {name:24} read {ours:5.0f}  bare call {bare:5.0f}  beyond bare + memory read {extra:4.0f}"
            )
        _log(f"store latency {LATENCY_MS} ms:")
        with (
            start_latency_proxy(redis_address(url), LATENCY_MS) as redis_proxy,
            start_latency_proxy(mc, LATENCY_MS) as memcached_proxy,
        ):
            slow = Stores(
                workdir=Path(tmp),
                redis_url=f"redis://{redis_proxy[0]}:{redis_proxy[1]}/0",
                memcached=memcached_proxy,
            )
            latency: dict[str, Any] = {
                "delay_ms": LATENCY_MS,
                "rtt_ms": {
                    "redis": round(measure_rtt_ms(redis_proxy, b"PING\r\n", b"+PONG\r\n"), 3),
                    "memcached": round(measure_rtt_ms(memcached_proxy, b"version\r\n", b"\r\n"), 3),
                    "redis_direct": round(measure_rtt_ms(redis_address(url), b"PING\r\n", b"+PONG\r\n"), 3),
                    "memcached_direct": round(measure_rtt_ms(mc, b"version\r\n", b"\r\n"), 3),
                },
            }
            _log(f"  measured round trips: {latency['rtt_ms']}")
            latency.update(asyncio.run(latency_phase(slow, available(LATENCY_CONTENDERS), plan)))
            results["latency"] = latency
        _log("merge mode (write, median µs per request):")
        results["merge"] = asyncio.run(merge_phase(stores, plan))
        _log("user_key (median µs per request):")
        results["user_key"] = asyncio.run(user_key_phase(stores, plan))
        _log("hostile input (median µs per request):")
        from benchmarks import hostile  # noqa: PLC0415

        results["hostile"] = asyncio.run(hostile.measure(hostile.QUICK if args.quick else hostile.FULL))
        if not args.no_outage:
            from benchmarks.outage import run_outage  # noqa: PLC0415

            _log("store outages behind a cuttable proxy:")
            results["outage"] = run_outage(url, mc, plan.outage)
        if not args.no_http:
            _log("HTTP (uvicorn + wrk):")
            results["http_settings"] = {
                "seconds": plan.wrk.seconds,
                "connections": plan.wrk.connections,
                "threads": plan.wrk.threads,
                "rounds": plan.wrk.rounds,
            }
            served = [Served(name, name) for name in available(HTTP_CONTENDERS)]
            results["http"] = run_http(served, stores, plan.wrk)
    _log("Starlette 0.52 venv:")
    compat = compat_phase(Path(args.compat_python), args.quick) if args.compat_python else None
    if compat is not None:
        results["starlette_052"] = compat
    results["targets"] = [target.as_dict() for target in report.evaluate_targets(results)]
    results["meta"]["seconds"] = round(time.monotonic() - started, 1)
    for table in report.tables(results):
        _log("")
        _log(report.render_text(*table))
    output = Path(args.output)
    report.write_outputs(results, output, output.with_suffix(".md"))
    written = [str(output), str(output.with_suffix(".md"))]
    chart = args.chart if args.chart is not None else ("" if args.quick else str(CHART))
    if chart:
        report.draw_chart(results, Path(chart))
        written.append(chart)
    docs = args.docs if args.docs is not None else ("" if args.quick else str(DOCS))
    if docs:
        report.write_docs_page(results, Path(docs), chart=Path(chart) if chart else None)
        written.append(docs)
    _log("\nwrote " + ", ".join(written))
    _log(f"total {results['meta']['seconds']} s")
    return 0


def compat(args: argparse.Namespace) -> int:
    """Cookie workloads only, JSON on stdout: what ``run`` starts in the Starlette 0.52 venv."""
    plan = QUICK if args.quick else FULL

    async def measure(workdir: Path) -> dict[str, Any]:
        stores = Stores(workdir=workdir)
        async with contextlib.AsyncExitStack() as stack:
            built = await _build_all(stack, COMPAT_CONTENDERS, stores)
            quiet = lambda message: None  # noqa: E731 - stdout carries the JSON
            data: dict[str, Any] = dict(
                await run_workloads(built, WORKLOADS, plan.sequential, plan.rounds, progress=quiet)
            )
            data["read-c64"] = await run_concurrent(
                built, plan.concurrent, plan.concurrent_rounds, progress=quiet
            )
        return data

    with tempfile.TemporaryDirectory(prefix="starlette-session-bench-") as tmp:
        data = asyncio.run(measure(Path(tmp)))
    data["starlette_version"] = _version("starlette")
    data["python"] = platform.python_version()
    print(json.dumps(data))
    return 0


def profile(args: argparse.Namespace) -> int:
    """Profile one contender's workload with pyinstrument and print the call tree."""
    from pyinstrument import Profiler  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415

    contender = CONTENDERS[args.contender]
    workload = next(w for w in [*WORKLOADS, CONCURRENT] if w.name == args.workload)

    async def measure(stores: Stores) -> None:
        async with contextlib.AsyncExitStack() as stack:
            built = await build(stack, contender, stores)
            caller: Caller = built.caller(workload)
            await time_sequential(caller, Budget(warmup=200, iterations=10, min_iterations=1))
            profiler = Profiler(interval=0.0001, async_mode="disabled")
            profiler.start()
            deadline = time.perf_counter() + args.seconds
            while time.perf_counter() < deadline:
                await caller()
            profiler.stop()
            print(profiler.output_text(unicode=True, color=False, show_all=False))

    with tempfile.TemporaryDirectory(prefix="starlette-session-bench-") as tmp:
        if contender.store in ("redis", "memcached"):
            with _servers() as (url, mc):
                asyncio.run(measure(Stores(workdir=Path(tmp), redis_url=url, memcached=mc)))
        else:
            asyncio.run(measure(Stores(workdir=Path(tmp))))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    run_parser = sub.add_parser("run", help="the whole benchmark (default)")
    for p in (parser, run_parser):
        p.add_argument("--quick", action="store_true", help="tiny budgets: checks that everything runs")
        p.add_argument("--no-http", action="store_true", help="skip the uvicorn + wrk benchmark")
        p.add_argument("--output", default=str(RESULTS / "latest.json"))
        p.add_argument("--no-outage", action="store_true", help="skip the store outage benchmark")
        p.add_argument(
            "--chart",
            default=None,
            help=f"PNG to draw ('' for none; default {CHART.relative_to(ROOT)}, none with --quick)",
        )
        p.add_argument(
            "--docs",
            default=None,
            help=f"Markdown page whose generated part to rewrite ('' for none; default "
            f"{DOCS.relative_to(ROOT)}, none with --quick)",
        )
        p.add_argument("--compat-python", default=str(ROOT / ".venv-bench-052" / "bin" / "python"))
    compat_parser = sub.add_parser("compat", help="cookie workloads only, JSON on stdout")
    compat_parser.add_argument("--quick", action="store_true")
    profile_parser = sub.add_parser("profile", help="pyinstrument profile of one workload")
    profile_parser.add_argument("contender", choices=sorted(CONTENDERS))
    profile_parser.add_argument("workload", choices=[w.name for w in WORKLOADS])
    profile_parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    if args.command == "compat":
        return compat(args)
    if args.command == "profile":
        return profile(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
