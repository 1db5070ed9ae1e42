"""What we add on top of each store's client: our read against the bare client's own call.

For every server-side backend, in the same phase and taking turns:

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
* and, as the yardstick, our cookie read; and, per backend, the bare call followed by our
  cookie read, timed as one: the cookie read in the conditions of a request that has just
  waited on the store, whose code runs with caches cooled by the switch away and back
  (``cookie_after_call_us``);
* the event loop thread's CPU time of each of these (``thread_time_ns``), which leaves out
  the waits themselves.

``overhead = our read - the bare call the read actually makes`` (through the bridge for a
blocking client); the issue's goal is ``overhead <= our cookie read``. It is also reported
against ``cookie_after_call_us``, the same request code in the same conditions.
The bare calls reach into the backends' private attributes (the key they would send), on
purpose: this module is the benchmark, not an API.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmarks import contenders as c
from benchmarks.harness import Budget, Timing, time_sequential
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
    #: The call our read makes, then our cookie read, timed as one: the cookie read in the
    #: conditions of a read that just waited on the store (see ``floor_phase``).
    call_then_cookie: Timing = field(default_factory=Timing)


async def floor_phase(
    stack: contextlib.AsyncExitStack,
    stores: c.Stores,
    names: Sequence[str],
    budget: Budget,
    rounds: int,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure our read, the bare client call and the raw-id read of each backend, taking turns.

    Returns:
        ``{"cookie_read_us", "hop_us", "backends": {name: {...}}}``.
    """
    read = WORKLOADS[0]
    cookie = await build(stack, c.CONTENDERS["ours-cookie"], stores)
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
            row.call_then_cookie.add(
                await time_sequential(_then(row.bare_call, cookie.caller(read)), budget, cpu=True)
            )
    backends: dict[str, Any] = {}
    for row in rows:
        ours, bare, raw_ids = row.read.median_us, row.bare.median_us, row.raw_read.median_us
        bridged = row.bridged.median_us if row.bridged.samples_ns else None
        sync_loop = row.sync_on_loop.median_us if row.sync_on_loop is not None else None
        sync_bridged = row.sync_bridged.median_us if row.sync_bridged is not None else None
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
            "read_cpu_us": _round(row.read.cpu_median_us),
            "call_cpu_us": _round((row.bridged if bridged is not None else row.bare).cpu_median_us),
        }
        # The cookie read right after the call our read makes: what the same request code costs
        # once the loop has just woken from a wait on the store (caches cooled by the switch).
        call_us = bare if bridged is None else bridged
        cold = row.call_then_cookie.median_us - call_us
        backends[row.built.name]["cookie_after_call_us"] = round(cold, 2)
        cold_cpu = row.call_then_cookie.cpu_median_us
        call_cpu_now = backends[row.built.name]["call_cpu_us"]
        backends[row.built.name]["cookie_after_call_cpu_us"] = (
            None if cold_cpu is None or call_cpu_now is None else round(cold_cpu - call_cpu_now, 2)
        )
        read_cpu, call_cpu = row.read.cpu_median_us, backends[row.built.name]["call_cpu_us"]
        backends[row.built.name]["overhead_cpu_us"] = (
            None if read_cpu is None or call_cpu is None else round(read_cpu - call_cpu, 2)
        )
        progress(
            f"  {row.built.name:23} read {ours:7.1f}  bare {bare:7.1f}"
            + ("" if bridged is None else f" (through the bridge {bridged:7.1f})")
            + (
                ""
                if sync_loop is None or sync_bridged is None
                else f" (sync client.get {sync_loop:7.1f}, through the bridge {sync_bridged:7.1f})"
            )
            + f"  raw ids {raw_ids:7.1f} µs"
        )
    progress(f"  ours-cookie read {cookie_read.median_us:.1f} µs; bridge hop {hop.median_us:.1f} µs")
    return {
        "cookie_read_us": round(cookie_read.median_us, 2),
        "cookie_read_cpu_us": _round(cookie_read.cpu_median_us),
        "hop_us": round(hop.median_us, 2),
        "backends": backends,
    }


def _then(first: Bare, second: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """One timed unit: the call our read makes (through the bridge for a blocking client), then ``second``."""
    call = first.through_bridge if first.blocking else first

    async def both() -> None:
        await call()
        await second()

    return both


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
