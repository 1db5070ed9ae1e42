"""starlette-session 0.4.3's pickled records: read without running code, migrated to JSON.

The records are written here the way 0.4.3 wrote them (its ``RedisSessionBackend.set`` is
``redis.set(str(uuid4()), pickle.dumps(session, protocol=pickle.HIGHEST_PROTOCOL), max_age)``);
the migration runs against a real Redis server, in a database of its own.
"""

from __future__ import annotations

import copyreg
import hashlib
import json
import logging
import os
import pickle
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from starlette_session.__main__ import main
from starlette_session.backends.redis import RedisBackend
from starlette_session.exceptions import BackendError, ConfigurationError
from starlette_session.legacy import (
    MAX_043_DEPTH,
    MAX_043_RECORD_BYTES,
    NO_TTL_FALLBACK,
    Counts,
    is_043_session_id,
    load_043_record,
    migrate_043_redis,
    new_key_for,
)
from tests.helpers import make_app, request, sign_json

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)
PREFIX = "starlette_session:"
DAY = 24 * 60 * 60


def pickled(value: object, protocol: int = pickle.HIGHEST_PROTOCOL) -> bytes:
    return pickle.dumps(value, protocol=protocol)


class RunsCommand:
    """Unpickles to ``os.system(command)``: what an attacker who can write to the store plants."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


# -- load_043_record: what is refused ------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_pickle_that_runs_a_command_is_refused_and_runs_nothing(
    protocol: int, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "pwned"
    data = pickled({"user": "ann", "x": RunsCommand(f"touch {marker}")}, protocol)
    with caplog.at_level(logging.WARNING, logger="starlette_session"):
        assert load_043_record(data) is None
    assert not marker.exists()
    assert len(caplog.records) == 1
    assert "Python global" in caplog.records[0].getMessage()
    # The payload is live: plain pickle would have run it.
    pickle.loads(data)
    assert marker.exists()


def _short(text: str) -> bytes:
    """SHORT_BINUNICODE: a str of under 256 UTF-8 bytes."""
    data = text.encode("utf-8")
    return b"\x8c" + bytes([len(data)]) + data


def hand_made(kind: str, command: str) -> bytes:
    """A pickle that calls ``os.system(command)``, written opcode by opcode."""
    call = _short("os") + _short("system") + b"\x93" + _short(command) + b"\x85R"  # STACK_GLOBAL
    if kind == "global":  # GLOBAL + REDUCE, protocol 0
        return f"cos\nsystem\n(S'{command}'\ntR.".encode()
    if kind == "inst":  # INST, protocol 0
        return f"(S'{command}'\nios\nsystem\n.".encode()
    if kind == "stack_global":  # protocol 4
        return b"\x80\x04" + call + b"."
    # A plain dict with one value built by the call.
    return b"\x80\x04}" + _short("a") + call + b"s."


@pytest.mark.parametrize("kind", ["global", "inst", "stack_global", "nested"])
def test_hand_made_global_opcodes_are_refused(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "pwned"
    data = hand_made(kind, f"touch {marker}")
    with caplog.at_level(logging.WARNING, logger="starlette_session"):
        assert load_043_record(data) is None
    assert not marker.exists()
    assert "'os'.'system'" in caplog.text
    pickle.loads(data)  # the payload is live
    assert marker.exists()


def test_an_extension_code_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    marker = tmp_path / "pwned"
    code = 0x7FFF_FFF0
    copyreg.add_extension("os", "system", code)
    try:
        # EXT4 (a global named by a number in copyreg's registry), the argument, REDUCE.
        data = b"\x80\x02\x84" + code.to_bytes(4, "little") + _short(f"touch {marker}") + b"\x85R."
        with caplog.at_level(logging.WARNING, logger="starlette_session"):
            assert load_043_record(data) is None
        assert not marker.exists()
        assert "'os'.'system'" in caplog.text
        pickle.loads(data)
        assert marker.exists()
    finally:
        copyreg.remove_extension("os", "system", code)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    "value",
    [
        b"raw bytes",
        {1, 2},
        frozenset({"a"}),
        bytearray(b"x"),
        1 + 2j,
        uuid.UUID(int=1),
        float("nan"),
        float("inf"),
        [{"deep": b"bytes, nested"}],
    ],
    ids=repr,
)
def test_values_json_cannot_hold_are_refused(protocol: int, value: object) -> None:
    assert load_043_record(pickled({"ok": 1, "bad": value}, protocol)) is None


@pytest.mark.parametrize("protocol", range(3, pickle.HIGHEST_PROTOCOL + 1))
def test_bytes_are_refused_for_being_bytes(protocol: int, caplog: pytest.LogCaptureFixture) -> None:
    # Protocols 3 and up build bytes without a global; the refusal is a decision, not an accident.
    with caplog.at_level(logging.WARNING, logger="starlette_session"):
        assert load_043_record(pickled({"avatar": b"\x89PNG"}, protocol)) is None
    assert "holds bytes" in caplog.text


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    "record",
    [
        ["a", "list"],
        "a string",
        None,
        42,
        {1: "int key"},
        {("a", "b"): "tuple key"},
        {"nested": {2: "int key inside"}},
        {None: "None key"},
    ],
    ids=repr,
)
def test_non_dicts_and_non_str_keys_are_refused(protocol: int, record: object) -> None:
    assert load_043_record(pickled(record, protocol)) is None


@pytest.mark.parametrize(
    "data",
    [b"", b"not a pickle", b"\x80\x05", pickled({"a": "b" * 100})[:-5], b"\x80\x04}\x94(.", b"Pid\n."],
    ids=["empty", "text", "proto-only", "truncated", "bad-stack", "persistent-id"],
)
def test_broken_pickles_are_refused(data: bytes) -> None:
    assert load_043_record(data) is None


def test_a_non_bytes_value_is_refused() -> None:
    assert load_043_record("a str") is None  # type: ignore[arg-type]


def test_the_size_limit() -> None:
    def record_of_size(size: int) -> bytes:
        overhead = len(pickled({"f": "x" * 100_000})) - 100_000
        data = pickled({"f": "x" * (size - overhead)})
        assert len(data) == size
        return data

    assert load_043_record(record_of_size(MAX_043_RECORD_BYTES)) is not None
    assert load_043_record(record_of_size(MAX_043_RECORD_BYTES + 1)) is None


def test_too_deep_is_refused() -> None:
    value: Any = "leaf"
    for _ in range(MAX_043_DEPTH):
        value = [value]
    assert load_043_record(pickled({"v": value})) is None
    assert load_043_record(pickled({"v": value[0]})) == {"v": value[0]}


def test_a_memo_bomb_is_refused() -> None:
    # Each level lists the one below twice: a tiny pickle standing for 2**40 leaves.
    value: Any = ["x" * 100]
    for _ in range(40):
        value = [value, value]
    data = pickled({"bomb": value})
    assert len(data) < 1000
    assert load_043_record(data) is None


def test_a_cycle_is_refused() -> None:
    looped: list[Any] = []
    looped.append(looped)
    assert load_043_record(pickled({"loop": looped})) is None


def test_an_int_json_cannot_write_is_refused() -> None:
    assert load_043_record(pickled({"n": 10**5000})) is None


def test_one_log_line_per_refusal(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="starlette_session"):
        assert load_043_record(pickled({"b": b"x"})) is None
        assert load_043_record(b"junk") is None
        assert load_043_record(pickled({"ok": True})) is not None
    assert [record.name for record in caplog.records] == ["starlette_session", "starlette_session"]


# -- load_043_record: what is accepted ------------------------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_plain_values_are_accepted(protocol: int) -> None:
    record = {
        "user": "zoë",
        "id": 12,
        "big": 2**80,
        "ratio": 0.25,
        "admin": False,
        "yes": True,
        "nothing": None,
        "cart": ["a", "b", ["nested", 1]],
        "point": (1, 2),
        "prefs": {"lang": "fr", "inner": {"tuple": ("x",)}},
        "": "empty key",
    }
    loaded = load_043_record(pickled(record, protocol))
    expected = json.loads(json.dumps(record))  # tuples become lists
    assert loaded == expected
    assert loaded is not None
    assert type(loaded["point"]) is list
    assert json.loads(json.dumps(loaded)) == expected


def test_an_empty_dict_is_accepted() -> None:
    assert load_043_record(pickled({})) == {}


def test_shared_references_are_accepted() -> None:
    name = "a" * 50
    shared = ["x"]
    assert load_043_record(pickled({"a": name, "b": name, "c": shared, "d": shared})) == {
        "a": name,
        "b": name,
        "c": ["x"],
        "d": ["x"],
    }


def test_is_043_session_id() -> None:
    assert is_043_session_id(str(uuid.uuid4()))
    assert not is_043_session_id(str(uuid.uuid4()).upper())
    assert not is_043_session_id("a" * 36)
    assert not is_043_session_id(PREFIX + str(uuid.uuid4()))
    assert not is_043_session_id(b"00000000-0000-4000-8000-000000000000")


def test_new_key_for() -> None:
    assert new_key_for(PREFIX, "abc") == PREFIX + "2-" + hashlib.sha256(b"abc").hexdigest()


# -- migrate_043_redis on a real Redis -------------------------------------------------------


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A client on a database of its own, emptied before and after."""
    url = redis_url.rsplit("/", 1)[0] + "/11"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def write_043(client: redis.Redis, record: object, ttl: int | None = 14 * DAY) -> str:
    """Store ``record`` the way starlette-session 0.4.3 did; return its id."""
    session_id = str(uuid.uuid4())
    client.set(session_id, pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL), ttl)
    return session_id


class Store:
    """What a test database holds: 0.4.3 sessions, unsafe records, and keys that are not ours."""

    def __init__(self, client: redis.Redis, tmp_path: Path) -> None:
        self.client = client
        self.marker = tmp_path / "pwned"
        self.sessions = {
            write_043(client, {"user": "ann", "n": 1}, 3600): {"user": "ann", "n": 1},
            write_043(client, {"user": "zoë", "cart": ("a", "b")}, 2 * DAY): {
                "user": "zoë",
                "cart": ["a", "b"],
            },
            write_043(client, {"user": "bob"}, None): {"user": "bob"},
        }
        self.ttls = {session_id: client.pttl(session_id) for session_id in self.sessions}
        self.unsafe = [
            write_043(client, {"x": RunsCommand(f"touch {self.marker}")}),
            write_043(client, {"avatar": b"\x89PNG"}),
        ]
        # Shaped like a 0.4.3 id, but not a 0.4.3 record.
        self.not_sessions = [str(uuid.uuid4()), str(uuid.uuid4())]
        client.set(self.not_sessions[0], b'{"json": "not a pickle"}')
        client.hset(self.not_sessions[1], "field", "value")
        # Not shaped like a 0.4.3 id at all.
        self.foreign = {
            b"cache:page:1": b"\x80\x04}\x94.",  # a pickled dict, under a key that is not an id
            b"user_0123456789abcdef": pickle.dumps({"not": "a session"}),
            str(uuid.uuid4()).upper().encode(): pickle.dumps({"upper": "case"}),
            (PREFIX + str(uuid.uuid4())).encode(): b'{"already": "json"}',
        }
        for key, value in self.foreign.items():
            client.set(key, value)

    def snapshot(self) -> dict[bytes, tuple[Any, Any]]:
        """Every key with its type and serialized value."""
        return {key: (self.client.type(key), self.client.dump(key)) for key in self.client.scan_iter()}


@pytest.fixture
def store(client: redis.Redis, tmp_path: Path) -> Store:
    return Store(client, tmp_path)


def test_migration_converts_and_keeps_the_ttl(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    client = store.client
    with caplog.at_level(logging.WARNING, logger="starlette_session"):
        counts = migrate_043_redis(client)
    assert counts == Counts(converted=3, skipped_unsafe=2, already_migrated=0, not_a_session=2)
    for session_id, record in store.sessions.items():
        assert client.get(session_id) is None
        stored = client.get(new_key_for(PREFIX, session_id))
        assert stored is not None
        assert json.loads(stored) == record
        ttl = client.pttl(new_key_for(PREFIX, session_id))
        old_ttl = store.ttls[session_id]
        if old_ttl == -1:
            assert NO_TTL_FALLBACK * 1000 - 60_000 < ttl <= NO_TTL_FALLBACK * 1000
        else:
            assert old_ttl - 60_000 < ttl <= old_ttl
    # Unsafe records are left where they are; nothing ran.
    for session_id in store.unsafe:
        assert client.get(session_id) is not None
    assert not store.marker.exists()
    for not_session in store.not_sessions:
        assert client.exists(not_session)
    for foreign, value in store.foreign.items():
        assert client.get(foreign) == value
    # One log line per refused record, and none names a session.
    assert len(caplog.records) == 2
    for name in [*store.unsafe, *store.sessions]:
        assert name not in caplog.text


def test_a_second_run_changes_nothing(store: Store) -> None:
    migrate_043_redis(store.client)
    before = store.snapshot()
    assert migrate_043_redis(store.client) == Counts(skipped_unsafe=2, not_a_session=2)
    assert store.snapshot() == before


def test_a_dry_run_changes_nothing(store: Store) -> None:
    before = store.snapshot()
    assert migrate_043_redis(store.client, dry_run=True) == Counts(
        converted=3, skipped_unsafe=2, not_a_session=2
    )
    assert store.snapshot() == before


def test_a_session_already_under_its_new_key_is_kept(client: redis.Redis) -> None:
    session_id = write_043(client, {"old": True})
    client.set(new_key_for(PREFIX, session_id), b'{"new": true}', ex=100)
    assert migrate_043_redis(client, dry_run=True) == Counts(already_migrated=1)
    assert client.exists(session_id)
    assert migrate_043_redis(client) == Counts(already_migrated=1)
    assert client.get(session_id) is None
    assert client.get(new_key_for(PREFIX, session_id)) == b'{"new": true}'


def test_batches_and_progress(client: redis.Redis) -> None:
    ids = [write_043(client, {"n": number}) for number in range(7)]
    seen: list[tuple[int, int]] = []
    counts = migrate_043_redis(
        client, batch=2, progress=lambda scanned, c: seen.append((scanned, c.converted))
    )
    assert counts == Counts(converted=7)
    assert len(seen) >= 4
    assert seen[-1] == (7, 7)
    assert [scanned for scanned, _ in seen] == sorted(scanned for scanned, _ in seen)
    for number, session_id in enumerate(ids):
        assert json.loads(client.get(new_key_for(PREFIX, session_id)) or b"") == {"n": number}


def test_another_key_prefix(client: redis.Redis) -> None:
    session_id = write_043(client, {"a": 1})
    assert migrate_043_redis(client, key_prefix="app:s:") == Counts(converted=1)
    assert client.get(new_key_for("app:s:", session_id)) == b'{"a": 1}'


@pytest.mark.anyio
async def test_a_migrated_session_stays_logged_in(client: redis.Redis) -> None:
    """The cookie 0.4.3 issued still loads the session after the migration: nobody is logged out."""
    session_id = write_043(client, {"user": "ann"})
    cookie = "session=" + sign_json({"_cssid": session_id})
    migrate_043_redis(client)
    assert await RedisBackend(client).get(session_id) == {"user": "ann"}
    app = make_app(cookie_name="session", backend_type="redis", backend_client=client)
    response = await request(app, "/read", cookie=cookie)
    assert response.json() == {"user": "ann"}


def test_bad_arguments(client: redis.Redis) -> None:
    with pytest.raises(ConfigurationError, match="non-empty key_prefix"):
        migrate_043_redis(client, key_prefix="")
    for batch in (0, -1, True):
        with pytest.raises(ConfigurationError, match="positive"):
            migrate_043_redis(client, batch=batch)


def test_a_decoding_client_is_refused(client: redis.Redis, redis_url: str) -> None:
    write_043(client, {"a": 1})
    decoding = redis.Redis.from_url(redis_url.rsplit("/", 1)[0] + "/11", decode_responses=True)
    try:
        with pytest.raises((ConfigurationError, UnicodeDecodeError)):
            migrate_043_redis(decoding)
    finally:
        decoding.close()


def test_an_unreachable_redis_is_a_backend_error() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    with pytest.raises(BackendError, match=r"migrate 0\.4\.3 sessions"):
        migrate_043_redis(dead)


# -- the command ----------------------------------------------------------------------------


def test_the_command(store: Store, redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = redis_url.rsplit("/", 1)[0] + "/11"
    before = store.snapshot()
    assert main(["migrate-043", url, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "dry run" in out
    assert "converted: 3" in out
    assert store.snapshot() == before

    assert main(["migrate-043", url, "--batch", "2"]) == 0
    captured = capsys.readouterr()
    assert "converted: 3" in captured.out
    assert "skipped (unsafe): 2" in captured.out
    assert "already migrated: 0" in captured.out
    assert "not a session: 2" in captured.out
    assert captured.err == ""  # not a terminal: no progress
    for session_id, record in store.sessions.items():
        assert json.loads(store.client.get(new_key_for(PREFIX, session_id)) or b"") == record

    assert main(["--key-prefix", PREFIX, "migrate-043", url]) == 0
    assert "converted: 0" in capsys.readouterr().out


def test_the_command_shows_progress_on_a_terminal(
    client: redis.Redis, redis_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for number in range(5):
        write_043(client, {"n": number})
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    url = redis_url.rsplit("/", 1)[0] + "/11"
    assert main(["migrate-043", url, "--batch", "2"]) == 0
    captured = capsys.readouterr()
    assert "converted: 5" in captured.out
    assert "\r" in captured.err
    assert "scanned" in captured.err


def test_the_command_refuses_an_empty_prefix(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate-043", redis_url, "--key-prefix", ""]) == 2
    assert "non-empty key_prefix" in capsys.readouterr().err


def test_the_command_needs_redis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate-043", str(tmp_path)]) == 2
    assert "Redis URL" in capsys.readouterr().err


def test_a_redis_cluster(
    redis_cluster_nodes: list[tuple[str, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    startup = [redis.cluster.ClusterNode(host, port) for host, port in redis_cluster_nodes]  # type: ignore[no-untyped-call]
    cluster = redis.cluster.RedisCluster(startup_nodes=startup)
    records = {str(uuid.uuid4()): {"n": number} for number in range(6)}  # spread over the nodes
    try:
        for session_id, record in records.items():
            cluster.set(session_id, pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL), 3600)
        assert migrate_043_redis(cluster, batch=2) == Counts(converted=6)
        for session_id, record in records.items():
            assert cluster.get(session_id) is None
            assert json.loads(cluster.get(new_key_for(PREFIX, session_id)) or b"") == record
            assert 3_500_000 < cluster.pttl(new_key_for(PREFIX, session_id)) <= 3_600_000
        host, port = redis_cluster_nodes[0]
        assert main(["migrate-043", f"redis://{host}:{port}/0", "--cluster"]) == 0
        assert "converted: 0" in capsys.readouterr().out
    finally:
        for session_id in records:
            cluster.delete(new_key_for(PREFIX, session_id))
        cluster.close()
