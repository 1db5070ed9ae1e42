"""What we add on top of each store's client: our read against the bare client's own call.

For every server-side backend, in the same phase:

* **our read**: the in-process read workload (``GET /read`` with the seeded session's cookie);
* **the bare client call**: the one store call that read makes, sent by hand on the same
  client with the same key, without the middleware; a blocking client's call is timed twice,
  called on the event loop (what a benchmark of the client alone shows) and through the
  package's thread bridge (what a caller who must not block the loop pays);
* for ``ours-redis-sync``, whose read goes through the asyncio twin of its ``redis.Redis``
  (``await backend.asyncio_client()``), the bare call is ``await twin.get(key)``; the sync
  client's own ``client.get(key)``, on the loop and through the bridge, is timed as well and
  reported beside it (``ours-redis-sync-threads`` is the same client with
  ``asyncio_twin=False``: its bare call is the sync ``client.get(key)`` through the bridge);
* **our read with** ``hash_ids=False``: the same backend keyed by the raw id, so the cost of
  hashing ids at rest shows;
* and, as the yardstick, our cookie read.

Each is timed in its own loop (the loops take turns, round by round), and, the deciding
measurement, our read, the call it makes, our cookie read, and that call followed by our
cookie read and by our memory read (the whole read but for its store path) are also timed
**taking turns** (``harness.time_interleaved``: one request of each per iteration, in a
shuffled order), beside the same backend and cookie read of the package at
``benchmarks.baseline.BASELINE_COMMIT`` when this clone's history has it. Timed in its own
loop, a cookie read runs warm, after thousands of its own kind, while our read always runs
after a wait on the store and the client's code; taking turns, all of them meet the same
conditions. The event loop thread's CPU time of each (``thread_time_ns``, which leaves out
the waits) is recorded too.

``overhead = our read - the store call the read actually makes`` (through the bridge for a
blocking client); the issue's goal is ``overhead <= our cookie read``.
The bare calls reach into the backends' private attributes (the key they would send), on
purpose: this module is the benchmark, not an API.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from benchmarks import contenders as c
from benchmarks.baseline import BASELINE_COMMIT
from benchmarks.harness import Budget, Timing, time_interleaved, time_sequential
from benchmarks.suite import WORKLOADS, Built, build

#: Contender name -> its factory (which takes the middleware's keywords).
_FACTORIES: dict[str, Callable[..., contextlib.AbstractAsyncContextManager[Any]]] = {
    "ours-memory": c._ours_memory,
    "ours-redis-sync": c._ours_redis_sync,
    "ours-redis-sync-threads": c._ours_redis_sync_threads,
    "ours-redis-async": c._ours_redis_async,
    "ours-memcache": c._ours_memcache,
    "ours-aiomemcache": c._ours_aiomemcache,
    "ours-file": c._ours_file,
    "ours-sqlite-sync": c._ours_sqlite_sync,
    "ours-sqlite-async": c._ours_sqlite_async,
}
FLOOR_BACKENDS = tuple(_FACTORIES)
#: The backends the baseline also has (its sync Redis client always went through threads).
BASELINE_BACKENDS = tuple(name for name in FLOOR_BACKENDS if name != "ours-redis-sync-threads")
RAW_SUFFIX = "+raw-ids"


def session_middleware(app: Any) -> Any:
    """Return the ``SessionMiddleware`` inside a built Starlette app."""
    from starlette_session import SessionMiddleware  # noqa: PLC0415

    node = app.middleware_stack or app.build_middleware_stack()
    for _ in range(32):
        if isinstance(node, SessionMiddleware):
            return node
        node = getattr(node, "app", None)
    raise RuntimeError("no SessionMiddleware in the app")


def _record_key(built: Built) -> tuple[Any, str]:
    """Return the backend and the key its read of the seeded session uses."""
    from starlette_session.cookies import parse_cookies  # noqa: PLC0415

    strategy = session_middleware(built.app).strategy
    assert built.cookie is not None
    cookies = parse_cookies([(b"cookie", built.cookie.encode("latin-1"))], c.COOKIE_NAME)
    session_id = strategy.session_id_from(cookies)
    if session_id is None:
        raise RuntimeError(f"{built.name}: the seeded cookie names no session")
    return strategy.backend, strategy.backend.key_for(session_id)


@dataclass(frozen=True)
class Bare:
    """The bare client call of one backend's read: ``func(*args)``, awaited if ``awaited``."""

    label: str
    func: Callable[..., Any]
    args: tuple[Any, ...] = ()
    awaited: bool = False
    #: The backend runs it in a worker thread (``_bridge.run_sync``).
    blocking: bool = False

    async def __call__(self) -> None:
        result = self.func(*self.args)
        if self.awaited:
            await result

    async def through_bridge(self) -> None:
        """The same call sent through the package's thread bridge, as the backend sends it."""
        from starlette_session._bridge import run_sync  # noqa: PLC0415

        await run_sync(self.func, *self.args)


async def bare_call(built: Built) -> Bare:
    """Return the bare client call equal to the store call of ``built``'s read.

    Must be awaited in the loop the measurements run in: the asyncio twin of a sync Redis
    client is made for (and bound to) the running loop.
    """
    backend, key = _record_key(built)
    name = built.name
    if name == "ours-memory":
        return Bare("dict lookup", backend._data.get, (key,))
    if name in ("ours-redis-sync", "ours-redis-sync-threads"):
        if backend.uses_twin:
            twin = await backend.asyncio_client()  # the same twin (and pool) the middleware's read uses
            return Bare("await twin.get(key)", twin.get, (backend._key(key),), awaited=True)
        return Bare("client.get(key)", backend.client.get, (backend._key(key),), blocking=True)
    if name == "ours-redis-async":
        return Bare("await client.get(key)", backend.client.get, (backend._key(key),), awaited=True)
    if name == "ours-memcache":
        return Bare("client.get(key)", backend.client.get, (backend._keys.key(key),), blocking=True)
    if name == "ours-aiomemcache":
        mc_key = backend._keys.key(key).encode("ascii")
        return Bare("await client.get(key)", backend.client.get, (mc_key,), awaited=True)
    if name == "ours-file":
        return Bare("path.read_bytes()", backend._path(key).read_bytes, blocking=True)
    if name in ("ours-sqlite-sync", "ours-sqlite-async"):
        import sqlalchemy  # noqa: PLC0415

        table = backend.table
        query = sqlalchemy.select(table.c.data).where(table.c.id == key, table.c.expires_at > time.time())
        if backend._async_engine is None:
            engine = backend._sync_engine

            def select_once() -> None:
                with engine.begin() as conn:
                    conn.execute(query).scalar()

            return Bare("SELECT in engine.begin()", select_once, blocking=True)
        async_engine = backend._async_engine

        async def async_select() -> None:
            async with async_engine.begin() as conn:
                (await conn.execute(query)).scalar()

        return Bare("SELECT in AsyncEngine.begin()", async_select, awaited=True)
    raise KeyError(name)


def sync_client_call(built: Built) -> Bare | None:
    """The sync client's own ``client.get(key)``, for a sync Redis backend that reads through its twin.

    ``None`` for every other backend: their bare call already is the client's own.
    """
    if built.name not in ("ours-redis-sync", "ours-redis-sync-threads"):
        return None
    backend, key = _record_key(built)
    if not backend.uses_twin:
        return None
    return Bare("client.get(key)", backend.client.get, (backend._key(key),), blocking=True)


async def _hop() -> None:
    from starlette_session._bridge import run_sync  # noqa: PLC0415

    await run_sync(int)


@dataclass
class _Row:
    built: Built
    raw: Built
    bare_call: Bare
    read: Timing
    raw_read: Timing
    bare: Timing
    bridged: Timing
    #: The sync client's own call when the read goes through the asyncio twin (else ``None``).
    sync_call: Bare | None = None
    sync_on_loop: Timing | None = None
    sync_bridged: Timing | None = None
    #: The same backend built with the package at ``benchmarks.baseline.BASELINE_COMMIT``.
    baseline: Built | None = None
    #: Taking turns (``time_interleaved``): our read, the call it makes, our cookie read, that
    #: call followed by our cookie read and by our memory read (each timed as one), and the
    #: baseline's read and cookie read when there is a baseline.
    together: list[Timing] = field(default_factory=list)


async def floor_phase(
    stack: contextlib.AsyncExitStack,
    stores: c.Stores,
    names: Sequence[str],
    budget: Budget,
    rounds: int,
    progress: Callable[[str], None] = print,
    baseline: ModuleType | None = None,
) -> dict[str, Any]:
    """Measure our read, the bare client call and the raw-id read of each backend, taking turns.

    Each is timed in its own loop (the rounds take turns between them), and our read, the
    call it makes and our cookie read are also timed taking turns request by request
    (``time_interleaved``), with the ``baseline`` package's read and cookie read beside them
    when one is given (``benchmarks.baseline``).

    Returns:
        ``{"cookie_read_us", "hop_us", "baseline", "backends": {name: {...}}}``.
    """
    read = WORKLOADS[0]
    cookie = await build(stack, c.CONTENDERS["ours-cookie"], stores)
    # Our memory read right after each store's call: the request code of a server-side read
    # with a store path that costs nothing (a dict lookup), where the real read's code runs.
    memory = await build(stack, c.CONTENDERS["ours-memory"], stores)
    base_cookie: Built | None = None
    base_stores = dataclasses.replace(stores, workdir=stores.workdir / "baseline")
    if baseline is not None:
        base_stores.workdir.mkdir(parents=True, exist_ok=True)
        base_cookie = await build(stack, _baseline_contender("ours-cookie", baseline), base_stores)
    rows: list[_Row] = []
    for name in names:
        built = await build(stack, c.CONTENDERS[name], stores)
        raw_factory = functools.partial(_FACTORIES[name], hash_ids=False)
        raw_contender = c.Contender(name + RAW_SUFFIX, "ours", c.CONTENDERS[name].store, raw_factory)
        raw = await build(stack, raw_contender, stores)
        row = _Row(built, raw, await bare_call(built), Timing(), Timing(), Timing(), Timing())
        row.sync_call = sync_client_call(built)
        if row.sync_call is not None:
            row.sync_on_loop, row.sync_bridged = Timing(), Timing()
        if baseline is not None and name in BASELINE_BACKENDS:
            row.baseline = await build(stack, _baseline_contender(name, baseline), base_stores)
        rows.append(row)
    cookie_read, hop = Timing(), Timing()
    for _ in range(rounds):
        cookie_read.add(await time_sequential(cookie.caller(read), budget, cpu=True))
        hop.add(await time_sequential(_hop, budget))
        for row in rows:
            row.read.add(await time_sequential(row.built.caller(read), budget, cpu=True))
            row.bare.add(await time_sequential(row.bare_call, budget, cpu=True))
            if row.bare_call.blocking:
                row.bridged.add(await time_sequential(row.bare_call.through_bridge, budget, cpu=True))
            if row.sync_call is not None and row.sync_on_loop is not None and row.sync_bridged is not None:
                row.sync_on_loop.add(await time_sequential(row.sync_call, budget))
                row.sync_bridged.add(await time_sequential(row.sync_call.through_bridge, budget))
            row.raw_read.add(await time_sequential(row.raw.caller(read), budget))
            store_call: Callable[[], Awaitable[None]] = (
                row.bare_call.through_bridge if row.bare_call.blocking else row.bare_call
            )
            calls: list[Callable[[], Awaitable[None]]] = [
                row.built.caller(read),
                store_call,
                cookie.caller(read),
                _then(store_call, cookie.caller(read)),
                _then(store_call, memory.caller(read)),
            ]
            if row.baseline is not None and base_cookie is not None:
                calls += [row.baseline.caller(read), base_cookie.caller(read)]
            timings = await time_interleaved(calls, budget, cpu=True)
            if not row.together:
                row.together = [Timing() for _ in timings]
            for total, timing in zip(row.together, timings, strict=True):
                total.add(timing)
    backends: dict[str, Any] = {}
    for row in rows:
        ours, bare, raw_ids = row.read.median_us, row.bare.median_us, row.raw_read.median_us
        bridged = row.bridged.median_us if row.bridged.samples_ns else None
        sync_loop = row.sync_on_loop.median_us if row.sync_on_loop is not None else None
        sync_bridged = row.sync_bridged.median_us if row.sync_bridged is not None else None
        call_cpu = (row.bridged if bridged is not None else row.bare).cpu_median_us
        read_cpu = row.read.cpu_median_us
        together = _together(row.together)
        backends[row.built.name] = {
            "bare_call": row.bare_call.label,
            "bare_us": round(bare, 2),
            "bare_bridged_us": None if bridged is None else round(bridged, 2),
            "read_us": round(ours, 2),
            "overhead_us": round(ours - bare, 2),
            "overhead_bridged_us": None if bridged is None else round(ours - bridged, 2),
            "read_raw_ids_us": round(raw_ids, 2),
            "hashing_us": round(ours - raw_ids, 2),
            # What the read actually makes: the bridge's call for a blocking client, else the bare call.
            "read_call": row.bare_call.label + (" through the bridge" if bridged is not None else ""),
            "sync_client_call": None if row.sync_call is None else row.sync_call.label,
            "sync_client_us": None if sync_loop is None else round(sync_loop, 2),
            "sync_client_bridged_us": None if sync_bridged is None else round(sync_bridged, 2),
            # The event loop thread's CPU time (no waiting on the store or a worker thread).
            "read_cpu_us": _round(read_cpu),
            "call_cpu_us": _round(call_cpu),
            "overhead_cpu_us": None
            if read_cpu is None or call_cpu is None
            else round(read_cpu - call_cpu, 2),
            "together": together,
        }
        progress(
            f"  {row.built.name:23} read {ours:7.1f}  bare {bare:7.1f}"
            + ("" if bridged is None else f" (through the bridge {bridged:7.1f})")
            + (
                ""
                if sync_loop is None or sync_bridged is None
                else f" (sync client.get {sync_loop:7.1f}, through the bridge {sync_bridged:7.1f})"
            )
            + f"  raw ids {raw_ids:7.1f} µs; taking turns: overhead {together['overhead_us']}"
            + f" / cookie read {together['cookie_read_us']}"
            + (
                ""
                if together["baseline_overhead_us"] is None
                else f"; at {BASELINE_COMMIT}: {together['baseline_overhead_us']}"
                f" / {together['baseline_cookie_read_us']}"
            )
        )
    progress(f"  ours-cookie read {cookie_read.median_us:.1f} µs; bridge hop {hop.median_us:.1f} µs")
    return {
        "cookie_read_us": round(cookie_read.median_us, 2),
        "cookie_read_cpu_us": _round(cookie_read.cpu_median_us),
        "hop_us": round(hop.median_us, 2),
        "baseline": None if baseline is None else BASELINE_COMMIT,
        "backends": backends,
    }


def _then(
    first: Callable[[], Awaitable[None]], second: Callable[[], Awaitable[None]]
) -> Callable[[], Awaitable[None]]:
    """One timed unit: ``first`` then ``second`` (the store call, then a cookie read right after it)."""

    async def both() -> None:
        await first()
        await second()

    return both


def _baseline_contender(name: str, package: ModuleType) -> c.Contender:
    factory = c._ours_cookie if name == "ours-cookie" else _FACTORIES[name]
    return c.Contender(f"{name}@{BASELINE_COMMIT}", "ours", None, functools.partial(factory, package=package))


def _together(timings: list[Timing]) -> dict[str, float | None]:
    """The medians of the turn-taking measurement, and the overheads taken from them."""
    medians = [t.median_us for t in timings]
    cpus = [t.cpu_median_us for t in timings]
    read, call, cookie, call_then_cookie, call_then_memory = medians[:5]
    out: dict[str, float | None] = {
        "read_us": round(read, 2),
        "call_us": round(call, 2),
        "cookie_read_us": round(cookie, 2),
        "overhead_us": round(read - call, 2),
        # Our cookie read right after the store call: the request code in the conditions of
        # one that has just waited on the store, as the part of our read after its call is.
        "cookie_after_call_us": round(call_then_cookie - call, 2),
        # Our memory read right after the store call: the whole read but for its store path.
        "memory_after_call_us": round(call_then_memory - call, 2),
        "read_cpu_us": _round(cpus[0]),
        "call_cpu_us": _round(cpus[1]),
        "cookie_read_cpu_us": _round(cpus[2]),
        "overhead_cpu_us": _difference(cpus[0], cpus[1]),
        "baseline_read_us": None,
        "baseline_cookie_read_us": None,
        "baseline_overhead_us": None,
    }
    if len(medians) == 7:
        out["baseline_read_us"] = round(medians[5], 2)
        out["baseline_cookie_read_us"] = round(medians[6], 2)
        out["baseline_overhead_us"] = round(medians[5] - call, 2)
    return out


def _difference(first: float | None, second: float | None) -> float | None:
    return None if first is None or second is None else round(first - second, 2)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
