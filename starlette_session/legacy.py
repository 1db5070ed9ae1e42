"""Reading starlette-session 0.4.3's pickled records safely, and moving them to JSON.

starlette-session 0.4.3 stored ``pickle.dumps(session, protocol=pickle.HIGHEST_PROTOCOL)``
under the bare session id (``str(uuid.uuid4())``, no key prefix), with the cookie's
``max_age`` as TTL, in Redis (``SET id pickle EX max_age``) and in aiomcache. Its pymemcache
backend stored JSON (``MemcacheJSONSerde``, flag 2) instead, which needs no conversion.

Unpickling bytes from a store lets anyone who can write to the store run code on the
server, so ``load_043_record`` never lets a pickle name a Python global: only what the pickle
opcodes build on their own (dicts, lists, tuples, strings, numbers, booleans, ``None``) is
accepted, and the result must be a JSON object. Records that hold anything else are refused,
including ``bytes`` values: JSON has no bytes, and turning them into text would hand the
application a ``str`` where it stored ``bytes``, so the record is refused rather than changed.

``migrate_043_redis`` rewrites a Redis database's 0.4.3 records as this package's JSON
records, keeping each one's remaining TTL (``python -m starlette_session migrate-043``).
"""

from __future__ import annotations

import io
import json
import logging
import math
import pickle
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from starlette_session.backends.base import DEFAULT_KEY_PREFIX, backend_error
from starlette_session.exceptions import ConfigurationError, MissingDependencyError
from starlette_session.expiry import DEFAULT_FALLBACK_TTL
from starlette_session.ids import is_valid_session_id, private_id

__all__ = [
    "MAX_043_RECORD_BYTES",
    "Counts",
    "is_043_session_id",
    "load_043_record",
    "migrate_043_redis",
    "new_key_for",
]

logger = logging.getLogger("starlette_session")

#: Records larger than this are refused unread (a session over 1 MB was never a real one).
MAX_043_RECORD_BYTES = 1024 * 1024
#: How deeply lists and dicts may nest in an accepted record.
MAX_043_DEPTH = 64
# A pickle can reference one object many times (memo opcodes), so a small pickle may stand
# for a huge tree: the walk stops after this many nodes plus string characters.
_EXPANSION_BUDGET = 4 * MAX_043_RECORD_BYTES
#: TTL in seconds given to a converted record whose 0.4.3 key had none (0.4.3's default max_age).
NO_TTL_FALLBACK = DEFAULT_FALLBACK_TTL

# 0.4.3's ids: ``str(uuid.uuid4())``, lowercase hex in 8-4-4-4-12 groups.
_043_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# The same shape as a Redis SCAN glob, so Redis filters before sending keys over.
_043_MATCH = "????????-????-????-????-????????????"
# Every pickle 0.4.3 wrote starts with the PROTO opcode (it used the highest protocol, >= 4).
_PROTO = b"\x80"


class _RefusedError(Exception):
    """A record that must not be loaded; the text says why (never with the id or the key)."""


class _NoGlobalsUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global, so no class, function or module is reached."""

    def find_class(self, module: str, name: str) -> Any:
        raise _RefusedError(f"it names the Python global {module[:60]!r}.{name[:60]!r}")

    def persistent_load(self, pid: Any) -> Any:
        raise _RefusedError("it uses a persistent id")


def _refuse(reason: str) -> None:
    logger.warning("refused a starlette-session 0.4.3 record: %s", reason)


def load_043_record(data: bytes) -> dict[str, Any] | None:
    """Return the session dict in a pickle written by starlette-session 0.4.3, or ``None``.

    No global is ever looked up, so no code can run. Accepted values: ``dict`` with ``str``
    keys, ``list``, ``tuple`` (returned as a list, as JSON would), ``str``, ``int``, finite
    ``float``, ``bool`` and ``None``. Refused (``None``, with one warning on the
    ``starlette_session`` logger, which never names the session): a record over
    ``MAX_043_RECORD_BYTES``, one that is not a pickle or is cut short, one that names any
    global (classes, functions, and ``set`` or ``bytearray`` in older protocols), a non-dict,
    non-``str`` keys at any level, ``set``, ``frozenset``, ``bytearray`` and ``bytes`` values
    (JSON has no bytes; decoding them would change their type under the application), NaN and
    infinities, nesting deeper than ``MAX_043_DEPTH``, a tree that memo references blow up past
    a few million nodes, and anything ``json.dumps`` cannot write.

    Args:
        data: the stored value, as bytes.

    Returns:
        A JSON-serializable dict, or ``None`` if the record was refused.
    """
    try:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise _RefusedError(f"it is a {type(data).__name__}, not bytes")
        if len(data) > MAX_043_RECORD_BYTES:
            raise _RefusedError(f"it is {len(data)} bytes long, over the limit of {MAX_043_RECORD_BYTES}")
        loaded = _NoGlobalsUnpickler(io.BytesIO(bytes(data))).load()
        if type(loaded) is not dict:
            raise _RefusedError(f"it holds a {type(loaded).__name__}, not a dict")
        record = _convert_dict(loaded, 0, [_EXPANSION_BUDGET])
        json.dumps(record)  # refuses ints past Python's digit limit, for one
    except _RefusedError as exc:
        _refuse(str(exc))
        return None
    except (RecursionError, MemoryError) as exc:
        _refuse(f"it is too large to read ({type(exc).__name__})")
        return None
    except Exception as exc:  # UnpicklingError, EOFError, ValueError...: a broken or foreign pickle
        _refuse(f"it is not a readable pickle ({type(exc).__name__})")
        return None
    return record


def _convert_dict(value: dict[Any, Any], depth: int, budget: list[int]) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    for key, item in value.items():
        if type(key) is not str:
            raise _RefusedError(f"it has a key of type {type(key).__name__}, not str")
        converted[key] = _convert(item, depth + 1, budget)
    return converted


def _convert(value: Any, depth: int, budget: list[int]) -> Any:
    """Return ``value`` as JSON types, or raise ``_RefusedError``. ``budget[0]`` counts down."""
    kind = type(value)
    budget[0] -= 1 + (len(value) if kind is str else 0)
    if budget[0] < 0:
        raise _RefusedError("it expands to more than a 0.4.3 session could hold")
    if value is None or kind in (str, int, bool):
        return value
    if kind is float:
        if not math.isfinite(value):
            raise _RefusedError("it holds a float that is not finite (JSON has no NaN or infinity)")
        return value
    if depth >= MAX_043_DEPTH:
        raise _RefusedError(f"it nests deeper than {MAX_043_DEPTH} levels")
    if kind is dict:
        return _convert_dict(value, depth, budget)
    if kind in (list, tuple):
        return [_convert(item, depth + 1, budget) for item in value]
    if kind is bytes:
        raise _RefusedError("it holds bytes, which JSON cannot store without changing their type")
    raise _RefusedError(f"it holds a {kind.__name__}, which JSON cannot store")


def is_043_session_id(value: object) -> bool:
    """Return whether ``value`` has the shape of a starlette-session 0.4.3 id (a uuid4 string)."""
    return is_valid_session_id(value) and _043_ID.fullmatch(str(value)) is not None


def new_key_for(key_prefix: str, session_id: str) -> str:
    """Return the Redis key this package stores ``session_id`` under with ``key_prefix``.

    The one place the migration forms a new key; it agrees with the Redis backend's default
    (``hash_ids=True``): the prefix and the private id, the hash of the public one.
    """
    return key_prefix + private_id(session_id)


@dataclass
class Counts:
    """What ``migrate_043_redis`` did (or, in a dry run, would do) with the keys it found.

    Attributes:
        converted: 0.4.3 records written as JSON under their new key (old key deleted).
        skipped_unsafe: 0.4.3 pickles refused by ``load_043_record``; left in place.
        already_migrated: 0.4.3 records whose new key already existed; the old key is deleted.
        not_a_session: keys shaped like a 0.4.3 id whose value is not a 0.4.3 pickle; untouched.
    """

    converted: int = 0
    skipped_unsafe: int = 0
    already_migrated: int = 0
    not_a_session: int = 0


def _batches(keys: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for key in keys:
        batch.append(key)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _key_text(key: object) -> str | None:
    if isinstance(key, bytes):
        try:
            return key.decode("ascii")
        except UnicodeDecodeError:
            return None
    return key if isinstance(key, str) else None


def migrate_043_redis(
    client: Any,
    *,
    key_prefix: str = DEFAULT_KEY_PREFIX,
    batch: int = 500,
    dry_run: bool = False,
    progress: Callable[[int, Counts], None] | None = None,
) -> Counts:
    """Rewrite starlette-session 0.4.3's pickled Redis records as this package's JSON records.

    Keys shaped like 0.4.3's ids (uuid4 strings, no prefix) are read in batches of ``batch``
    (``SCAN``, then one pipeline of ``GET`` and ``PTTL``). Each record ``load_043_record``
    accepts is written as JSON under ``new_key_for(key_prefix, id)`` with ``SET ... NX PX``
    and the old key's remaining TTL (``NO_TTL_FALLBACK`` seconds if it had none), then the old
    key is deleted. When the new key already exists (an earlier run, or the middleware's
    ``legacy_043`` read-through, got there first) it is kept and the old key is deleted.
    Refused records and values that are not 0.4.3 pickles are left in place; no other key is
    read or changed. Running it again is safe. Run it once no 0.4.3 process writes to the
    database any more: a record 0.4.3 rewrites after it was converted is not converted again.

    Args:
        client: a sync ``redis.Redis`` (or ``redis.cluster.RedisCluster``) that returns bytes
            (not made with ``decode_responses=True``).
        key_prefix: the ``key_prefix`` of the backend that will read the sessions; not empty.
        batch: keys per ``SCAN`` step and per pipeline.
        dry_run: count what would be done, change nothing.
        progress: called after each batch with the number of keys scanned and the counts so far.

    Returns:
        The counts.

    Raises:
        ConfigurationError: ``key_prefix`` is empty or ``batch`` is not positive, or the client
            decodes responses.
        BackendError: Redis failed (the text never names a key).
        MissingDependencyError: redis-py is not installed.
    """
    if not isinstance(key_prefix, str) or not key_prefix:
        raise ConfigurationError(
            "migrate_043_redis needs a non-empty key_prefix: with key_prefix='' the new keys are the "
            "old ones; keep the default 'starlette_session:' or read old records with legacy_043=True"
        )
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigurationError(f"batch={batch!r} must be a positive int")
    try:
        import redis.exceptions  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        raise MissingDependencyError("redis", "redis") from exc
    counts = Counts()
    scanned = 0
    try:
        for keys in _batches(client.scan_iter(match=_043_MATCH, count=batch), batch):
            scanned += len(keys)
            ids = [text for text in map(_key_text, keys) if text is not None and is_043_session_id(text)]
            _migrate_batch(client, ids, key_prefix, dry_run, counts)
            if progress is not None:
                progress(scanned, counts)
    except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
        raise backend_error("Redis", "migrate 0.4.3 sessions", exc) from None
    return counts


def _migrate_batch(client: Any, ids: list[str], key_prefix: str, dry_run: bool, counts: Counts) -> None:
    if not ids:
        return
    reading = client.pipeline(transaction=False)
    for session_id in ids:
        reading.get(session_id)
        reading.pttl(session_id)
    answers = reading.execute(raise_on_error=False)
    todo: list[tuple[str, bytes, int]] = []
    for index, session_id in enumerate(ids):
        value, pttl = answers[2 * index], answers[2 * index + 1]
        if value is None or not isinstance(pttl, int) or pttl in (-2, 0):
            continue  # expired or deleted since SCAN saw it
        if isinstance(value, str):
            raise ConfigurationError(
                "migrate_043_redis needs a Redis client that returns bytes; make it without "
                "decode_responses=True"
            )
        if not isinstance(value, bytes) or not value.startswith(_PROTO):
            counts.not_a_session += 1  # another type (an error here), or not a pickle at all
            continue
        record = load_043_record(value)
        if record is None:
            counts.skipped_unsafe += 1
            continue
        ttl_ms = NO_TTL_FALLBACK * 1000 if pttl == -1 else pttl
        todo.append((session_id, json.dumps(record).encode("utf-8"), ttl_ms))
    if not todo:
        return
    writing = client.pipeline(transaction=False)
    for session_id, data, ttl_ms in todo:
        new_key = new_key_for(key_prefix, session_id)
        if dry_run:
            writing.exists(new_key)
        else:
            writing.set(new_key, data, px=ttl_ms, nx=True)
            writing.delete(session_id)
    results = writing.execute()
    step = 1 if dry_run else 2
    for index in range(len(todo)):
        result = results[index * step]
        created = not result if dry_run else bool(result)
        if created:
            counts.converted += 1
        else:
            counts.already_migrated += 1
