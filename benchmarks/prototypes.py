"""Prototypes of optimizations, measured against the package as it is. Nothing here changes the package.

1. ``FastSignedCodec``: Starlette's cookie format (itsdangerous ``TimestampSigner``, HMAC-SHA1,
   "django-concat" key derivation), byte for byte, but with the derived keys computed and
   keyed into HMAC objects once, instead of on every sign/unsign, and no exception-driven
   control flow. Cookies cross over both ways: checked before anything is timed.
2. ``LazyCompareSession``: the session only serializes itself at response time to look for
   a change inside a nested value when such a value was actually handed out (``get``,
   ``[]``, ``items()``...); reading a scalar no longer costs a ``json.dumps``.
3. ``CachedFastSignedCodec``: the fast codec plus a bounded cache of cookie values it has
   verified, so a repeated cookie skips the HMAC and base64 work (its age is still checked).
4. A thread bridge on ``loop.run_in_executor`` with a dedicated ``ThreadPoolExecutor``
   (40 threads, like anyio's default limiter), against ``anyio.to_thread.run_sync``.

Each variant is swapped in by patching a module attribute of the package while the variant's
app is built or measured, never by editing package files.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import functools
import hashlib
import hmac
import statistics
import struct
import time
from base64 import b64decode, b64encode, urlsafe_b64decode, urlsafe_b64encode
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ParamSpec, TypeVar

import anyio.to_thread

from benchmarks.harness import ASGIApp, Budget, Caller, Throughput, Timing, time_concurrent, time_sequential

P = ParamSpec("P")
T = TypeVar("T")

_SALT = b"itsdangerous.Signer"
_INT64 = struct.Struct(">Q")


class FastSignedCodec:
    """``starlette_session.signing.SignedCodec``'s format with precomputed keys.

    Args:
        secret_keys: newest first; the first signs, all verify.
        max_age: the signature's maximum age in seconds, ``None`` for no limit.
    """

    def __init__(self, secret_keys: Sequence[bytes], max_age: int | None) -> None:
        # itsdangerous' default "django-concat" derivation: sha1(salt + b"signer" + secret).
        # The HMAC objects are keyed once; each signature copies one (skips the key padding).
        self._keys = [
            hmac.new(hashlib.sha1(_SALT + b"signer" + key).digest(), digestmod=hashlib.sha1)
            for key in secret_keys
        ]
        self.max_age = max_age

    def _signature(self, key: hmac.HMAC, message: bytes) -> bytes:
        mac = key.copy()
        mac.update(message)
        return mac.digest()

    def encode(self, payload: bytes) -> str:
        timestamp = urlsafe_b64encode(_INT64.pack(int(time.time())).lstrip(b"\x00")).rstrip(b"=")
        message = b64encode(payload) + b"." + timestamp
        signature = urlsafe_b64encode(self._signature(self._keys[0], message)).rstrip(b"=")
        return (message + b"." + signature).decode("ascii")

    def decode(self, value: str) -> bytes | None:
        verified = self.verify(value)
        return None if verified is None else verified[0]

    def verify(self, value: str) -> tuple[bytes, int] | None:
        """Return the payload and the Unix time it was signed at, or ``None`` if invalid or expired."""
        try:
            message, _, signature_text = value.encode("ascii").rpartition(b".")
            signature = urlsafe_b64decode(signature_text + b"=" * (-len(signature_text) % 4))
            if not any(hmac.compare_digest(self._signature(key, message), signature) for key in self._keys):
                return None
            data, dot, timestamp_text = message.rpartition(b".")
            if not dot:
                return None
            raw = urlsafe_b64decode(timestamp_text + b"=" * (-len(timestamp_text) % 4))
            if len(raw) > 8:
                return None
            signed_at: int = _INT64.unpack(raw.rjust(8, b"\x00"))[0]
            if not self._fresh(signed_at):
                return None
            return b64decode(data, validate=True), signed_at
        except (UnicodeEncodeError, binascii.Error, ValueError):
            return None

    def _fresh(self, signed_at: int) -> bool:
        if self.max_age is None:
            return True
        age = int(time.time()) - signed_at
        return 0 <= age <= self.max_age


class CachedFastSignedCodec(FastSignedCodec):
    """``FastSignedCodec`` that remembers cookie values it verified (payload and signing time).

    A browser sends the same cookie until the session changes, so most requests of a
    read-mostly app skip the HMAC, both base64 decodings and the timestamp parsing. Only
    exact strings that verified are cached; their age is checked on every hit.

    Args:
        secret_keys: newest first; the first signs, all verify.
        max_age: the signature's maximum age in seconds, ``None`` for no limit.
        size: entries kept; the cache is emptied when full (no LRU bookkeeping per hit).
    """

    def __init__(self, secret_keys: Sequence[bytes], max_age: int | None, size: int = 4096) -> None:
        super().__init__(secret_keys, max_age)
        self._cache: dict[str, tuple[bytes, int]] = {}
        self._size = size

    def verify(self, value: str) -> tuple[bytes, int] | None:
        hit = self._cache.get(value)
        if hit is not None:
            return hit if self._fresh(hit[1]) else None
        verified = super().verify(value)
        if verified is not None:
            if len(self._cache) >= self._size:
                self._cache.clear()
            self._cache[value] = verified
        return verified


def check_codec_compatibility(secret: str) -> None:
    """Verify that ``FastSignedCodec`` and the package's ``SignedCodec`` read each other's cookies.

    Raises:
        AssertionError: a cookie did not cross over, or a tampered one was accepted.
    """
    from starlette_session.signing import SignedCodec, normalize_secret_keys  # noqa: PLC0415

    keys = normalize_secret_keys([secret, "an-older-key"])
    reference = SignedCodec(keys, 3600)
    fast = FastSignedCodec(keys, 3600)
    cached = CachedFastSignedCodec(keys, 3600)
    payload = b'{"user_id": 1, "roles": ["a", "b"]}'
    assert cached.decode(reference.encode(payload)) == payload
    assert cached.decode(reference.encode(payload)) == payload  # a hit
    assert fast.decode(reference.encode(payload)) == payload
    assert reference.decode(fast.encode(payload)) == payload
    for _ in range(3):  # byte-identical when both sign within the same second
        second = int(time.time())
        ours, theirs = fast.encode(payload), reference.encode(payload)
        if int(time.time()) == second:
            assert ours == theirs
            break
    old = SignedCodec(normalize_secret_keys("an-older-key"), 3600)
    assert fast.decode(old.encode(payload)) == payload  # rotation: old keys still verify
    tampered = fast.encode(payload)
    assert fast.decode(tampered[:-2] + ("A" if tampered[-2] != "A" else "B") + tampered[-1]) is None
    assert fast.decode("garbage") is None
    assert fast.decode("é.x.y") is None
    expired = FastSignedCodec(keys, 0)
    expiring = CachedFastSignedCodec(keys, 0)
    stale = SignedCodec(keys, None).encode(payload)
    assert expiring.decode(stale) == payload
    time.sleep(1.05)
    assert expired.decode(stale) is None
    assert expiring.decode(stale) is None  # a cached entry expires too


def time_codecs(secret: str, payload: bytes, iterations: int = 20_000) -> dict[str, dict[str, float]]:
    """Return the µs per ``encode`` and ``decode`` of the package's codec and the prototypes.

    ``decode`` is timed on one cookie over and over, so codecs with a cache time their hit path.
    """
    from starlette_session.signing import SignedCodec, normalize_secret_keys  # noqa: PLC0415

    keys = normalize_secret_keys(secret)
    results: dict[str, dict[str, float]] = {}
    codecs: list[tuple[str, Any]] = [
        ("package SignedCodec (a repeated cookie)", SignedCodec(keys, 3600)),
        ("fast", FastSignedCodec(keys, 3600)),
        ("fast + decode cache (hit)", CachedFastSignedCodec(keys, 3600)),
    ]
    for name, codec in codecs:
        cookie = codec.encode(payload)
        start = time.perf_counter()
        for _ in range(iterations):
            codec.encode(payload)
        encode_us = (time.perf_counter() - start) / iterations * 1e6
        start = time.perf_counter()
        for _ in range(iterations):
            codec.decode(cookie)
        decode_us = (time.perf_counter() - start) / iterations * 1e6
        results[name] = {"encode_us": round(encode_us, 2), "decode_us": round(decode_us, 2)}
    return results


# -- change detection -------------------------------------------------------------------------------


def lazy_compare_session_class() -> type[Any]:
    """Return a ``Session`` subclass that compares bytes only after handing out a dict or list."""
    from starlette_session.session import Session  # noqa: PLC0415

    class LazyCompareSession(Session):
        handed_out = False

        def __getitem__(self, key: str) -> Any:
            value = super().__getitem__(key)
            if isinstance(value, dict | list):
                self.handed_out = True
            return value

        def get(self, key: str, default: Any = None) -> Any:
            value = super().get(key, default)
            if isinstance(value, dict | list):
                self.handed_out = True
            return value

        # Everything else that can return a value (or a view of them) counts as handing out.
        def values(self) -> Any:
            self.handed_out = True
            return super().values()

        def items(self) -> Any:
            self.handed_out = True
            return super().items()

        def copy(self) -> dict[str, Any]:
            self.handed_out = True
            return super().copy()

        def pop(self, key: str, *args: Any) -> Any:
            self.handed_out = True
            return super().pop(key, *args)

        def popitem(self) -> tuple[str, Any]:
            self.handed_out = True
            return super().popitem()

        def setdefault(self, key: str, default: Any = None) -> Any:
            self.handed_out = True
            return super().setdefault(key, default)

        def dump_if_changed(self) -> bytes | None:
            if not (self.modified or self.regenerate or self.handed_out):
                return None
            return super().dump_if_changed()

    return LazyCompareSession


def lazy_compare_patch() -> contextlib.AbstractContextManager[None]:
    """Make the strategies create ``LazyCompareSession`` objects (active while serving)."""
    import starlette_session.strategies  # noqa: PLC0415

    return patched(starlette_session.strategies, "Session", lazy_compare_session_class())


# -- thread bridges ---------------------------------------------------------------------------------

Bridge = Callable[..., Awaitable[Any]]


def make_executor_bridge(workers: int = 40) -> Bridge:
    """Return a ``run_sync`` on ``loop.run_in_executor`` with a dedicated pool of ``workers`` threads.

    40 is anyio's default limiter. Fewer threads also means less GIL hand-over between them.
    """
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"bench-bridge-{workers}")

    async def run_sync(func: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        if kwargs:
            return await loop.run_in_executor(pool, functools.partial(func, *args, **kwargs))
        return await loop.run_in_executor(pool, func, *args)

    return run_sync


executor_run_sync = make_executor_bridge(40)


async def anyio_run_sync(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """The package's bridge, as it is."""
    from starlette_session._bridge import run_sync  # noqa: PLC0415

    return await run_sync(func, *args, **kwargs)


def _noop() -> None:
    return None


async def time_bridges(calls: int = 5000, concurrency: int = 64) -> dict[str, dict[str, float]]:
    """Return the cost of one trivial call through each bridge, alone and 64 at a time."""
    bridges: dict[str, Callable[[Callable[[], None]], Awaitable[None]]] = {
        "anyio.to_thread.run_sync": anyio.to_thread.run_sync,
        "run_in_executor": executor_run_sync,
    }
    results: dict[str, dict[str, float]] = {}
    for name, bridge in bridges.items():
        for _ in range(200):
            await bridge(_noop)
        samples: list[int] = []
        for _ in range(calls):
            start = time.perf_counter_ns()
            await bridge(_noop)
            samples.append(time.perf_counter_ns() - start)

        async def worker(
            count: int, bridge: Callable[[Callable[[], None]], Awaitable[None]] = bridge
        ) -> None:
            for _ in range(count):
                await bridge(_noop)

        start_s = time.perf_counter()
        await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start_s
        results[name] = {
            "sequential_us": round(statistics.median(samples) / 1000, 2),
            "concurrent_calls_per_s": round((calls // concurrency) * concurrency / elapsed, 1),
        }
    return results


# -- variants of a contender ---------------------------------------------------------------------------


@contextlib.contextmanager
def patched(module: ModuleType, name: str, value: Any) -> Iterator[None]:
    """Replace ``module.name`` with ``value`` inside the block."""
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


@dataclass
class Variant:
    """An app plus the patch that must be active while it serves (``None``: none)."""

    name: str
    app: ASGIApp
    cookie: str | None
    patch: Callable[[], contextlib.AbstractContextManager[None]] | None = None

    def active(self) -> contextlib.AbstractContextManager[None]:
        return self.patch() if self.patch is not None else contextlib.nullcontext()


async def compare_sequential(
    variants: Sequence[Variant], path: str, with_cookie: bool, budget: Budget, rounds: int
) -> dict[str, dict[str, float]]:
    """Time ``path`` on each variant, taking turns; return each one's timing summary."""
    timings = {variant.name: Timing() for variant in variants}
    for _ in range(rounds):
        for variant in variants:
            with variant.active():
                caller = Caller(variant.app, path, variant.cookie if with_cookie else None)
                timings[variant.name].add(await time_sequential(caller, budget))
    return {name: timing.summary() for name, timing in timings.items()}


async def compare_concurrent(
    variants: Sequence[Variant], path: str, concurrency: int, budget: Budget, rounds: int
) -> dict[str, dict[str, float]]:
    """Measure ``concurrency`` simultaneous requests on each variant, taking turns."""
    totals = {variant.name: Throughput() for variant in variants}
    for _ in range(rounds):
        for variant in variants:
            with variant.active():
                caller = Caller(variant.app, path, variant.cookie)
                totals[variant.name].add(await time_concurrent(caller, concurrency, budget))
    return {name: total.summary() for name, total in totals.items()}


async def time_clients(redis_url: str, memcached: tuple[str, int], calls: int = 2000) -> dict[str, float]:
    """Return the median µs of one GET through each store client alone: the floor of a store read."""
    import aiomcache  # noqa: PLC0415
    import redis  # noqa: PLC0415
    import redis.asyncio  # noqa: PLC0415
    from pymemcache.client.base import Client  # noqa: PLC0415

    sync_redis = redis.Redis.from_url(redis_url)
    async_redis = redis.asyncio.Redis.from_url(redis_url)
    pymemcache_client = Client(memcached)
    aiomcache_client = aiomcache.Client(*memcached)
    sync_redis.set("bench:floor", b"x" * 310)
    pymemcache_client.set("bench:floor", b"x" * 310)

    async def in_thread_redis() -> Any:
        return await anyio.to_thread.run_sync(sync_redis.get, "bench:floor")

    async def in_thread_memcache() -> Any:
        return await anyio.to_thread.run_sync(pymemcache_client.get, "bench:floor")

    async def blocking_redis() -> Any:
        return sync_redis.get("bench:floor")

    cases: dict[str, Callable[[], Awaitable[Any]]] = {
        "redis.asyncio GET": lambda: async_redis.get("bench:floor"),
        "redis.Redis GET via anyio.to_thread": in_thread_redis,
        "redis.Redis GET on the loop (blocking)": blocking_redis,
        "aiomcache get": lambda: aiomcache_client.get(b"bench:floor"),
        "pymemcache get via anyio.to_thread": in_thread_memcache,
    }
    results: dict[str, float] = {}
    try:
        for name, call in cases.items():
            for _ in range(100):
                await call()
            samples = []
            for _ in range(calls):
                start = time.perf_counter_ns()
                await call()
                samples.append(time.perf_counter_ns() - start)
            results[name] = round(statistics.median(samples) / 1000, 2)
    finally:
        sync_redis.close()
        await async_redis.aclose()
        pymemcache_client.close()
        await aiomcache_client.close()
    return results


def fast_codec_patch() -> contextlib.AbstractContextManager[None]:
    """Make ``SessionMiddleware`` build a ``FastSignedCodec`` (active while the app is built)."""
    import starlette_session.middleware  # noqa: PLC0415

    return patched(starlette_session.middleware, "SignedCodec", FastSignedCodec)


def cached_codec_patch() -> contextlib.AbstractContextManager[None]:
    """Make ``SessionMiddleware`` build a ``CachedFastSignedCodec`` (active while the app is built)."""
    import starlette_session.middleware  # noqa: PLC0415

    return patched(starlette_session.middleware, "SignedCodec", CachedFastSignedCodec)


_bridges: dict[int, Bridge] = {40: executor_run_sync}


def executor_bridge_patch(workers: int = 40) -> contextlib.AbstractContextManager[None]:
    """Make ``RedisBackend`` use an executor bridge of ``workers`` threads (active while it serves)."""
    import starlette_session.backends.redis  # noqa: PLC0415

    if workers not in _bridges:
        _bridges[workers] = make_executor_bridge(workers)
    return patched(starlette_session.backends.redis, "run_sync", _bridges[workers])
