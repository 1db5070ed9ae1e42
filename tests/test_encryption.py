"""Encrypted cookie sessions: keys, the token format, what the associated data binds, rotation."""

from __future__ import annotations

import base64
import json
import secrets
import struct
import subprocess
import sys
from itertools import count

import pytest
from starlette.datastructures import Secret

from starlette_session import ConfigurationError, MissingDependencyError, SessionMiddleware
from starlette_session.backends.memory import MemoryBackend
from starlette_session.encryption import (
    GENERATE_KEY_COMMAND,
    VERSION,
    EncryptedCodec,
    key_id,
    normalize_encryption_keys,
)
from starlette_session.signing import SignedCodec
from tests.helpers import T0, FakeClock
from tests.test_cookie_chunks import Client, setter

KEY = bytes(range(32))
OTHER_KEY = bytes(range(100, 132))
PAYLOAD = b'{"user": "alice", "role": "admin"}'
URLSAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def b64(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode()


def raw(token: str) -> bytes:
    return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))


def unraw(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- keys ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [16, 24, 32])
def test_keys_of_each_aes_size_in_each_form(size: int) -> None:
    key = secrets.token_bytes(size)
    text = b64(key)
    forms: list[object] = [
        key,
        text,
        text.rstrip("="),
        f" {text}\n",
        Secret(text),
        text.replace("-", "+").replace("_", "/"),
    ]
    for form in forms:
        assert normalize_encryption_keys(form) == [key], form  # type: ignore[arg-type]
    codec = EncryptedCodec([key], 60, "session")
    assert codec.decode(codec.encode(PAYLOAD)) == PAYLOAD


def test_a_list_of_keys_keeps_its_order() -> None:
    assert normalize_encryption_keys([KEY, b64(OTHER_KEY)]) == [KEY, OTHER_KEY]
    assert normalize_encryption_keys((b64(OTHER_KEY), KEY)) == [OTHER_KEY, KEY]


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"short",
        bytes(31),
        bytes(33),
        b64(bytes(32)).encode(),  # base64 text given as bytes
        "",
        "not base64!",
        b64(bytes(20)),
        "a" * 64,  # 32 bytes as hex is not accepted
        "A",
        [],
        [KEY, "bad"],
        12345,
        None,
    ],
)
def test_bad_keys_fail_with_the_way_to_generate_one(bad: object) -> None:
    with pytest.raises(ConfigurationError) as caught:
        normalize_encryption_keys(bad)  # type: ignore[arg-type]
    assert GENERATE_KEY_COMMAND in str(caught.value)
    assert "encryption_key" in str(caught.value)


def test_the_documented_command_makes_a_valid_key() -> None:
    command = GENERATE_KEY_COMMAND.removeprefix('python -c "').removesuffix('"')
    key = subprocess.run([sys.executable, "-c", command], check=True, capture_output=True, text=True).stdout
    assert len(normalize_encryption_keys(key)[0]) == 32


def test_bad_key_through_the_middleware_fails_at_construction() -> None:
    with pytest.raises(ConfigurationError, match="generate one"):
        SessionMiddleware(Client()._app, "secret", encryption_key="too short")


def test_encryption_key_with_a_backend_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="cookie sessions only"):
        SessionMiddleware(Client()._app, "secret", encryption_key=KEY, backend=MemoryBackend())


def test_missing_cryptography_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(MissingDependencyError) as caught:
        EncryptedCodec([KEY], 60, "session")
    assert caught.value.extra == "cryptography"
    assert "starlette-session[cryptography]" in str(caught.value)


def test_importing_the_package_does_not_import_cryptography() -> None:
    code = (
        "import sys, starlette_session, starlette_session.encryption, starlette_session.middleware\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] == 'cryptography']\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the token -----------------------------------------------------------------------------------


def test_token_format_is_versioned_unpadded_urlsafe_ascii() -> None:
    clock = FakeClock()
    codec = EncryptedCodec([KEY], 3600, "session", clock=clock)
    for payload in (b"", b"{}", PAYLOAD, bytes(range(256)) * 10):
        token = codec.encode(payload)
        assert set(token) <= URLSAFE
        assert "=" not in token
        data = raw(token)
        version, token_key_id, expiry = struct.unpack(">BBQ", data[:10])
        assert version == VERSION == 1
        assert token_key_id == key_id(KEY)
        assert expiry == int(clock.now) + 3600
        assert len(data) == 10 + 12 + len(payload) + 16
        assert payload not in data or not payload
        assert codec.decode(token) == payload


def test_nonce_is_fresh_for_every_write() -> None:
    codec = EncryptedCodec([KEY], 3600, "session", clock=FakeClock())
    tokens = [codec.encode(PAYLOAD) for _ in range(500)]
    nonces = {raw(token)[10:22] for token in tokens}
    assert len(nonces) == len(tokens)
    assert all(codec.decode(token) == PAYLOAD for token in tokens)


def test_every_altered_character_is_rejected() -> None:
    codec = EncryptedCodec([KEY], 3600, "session")
    token = codec.encode(PAYLOAD)
    for position in range(len(token)):
        for replacement in {"A", "B", "_", "-", "0", "z"} - {token[position]}:
            altered = token[:position] + replacement + token[position + 1 :]
            assert codec.decode(altered) is None, (position, replacement)
    for altered in (
        token[:-1],
        token[1:],
        token + "A",
        token + "AA",
        token + "=",
        token + ".",
        "",
        "A" * len(token),
    ):
        assert codec.decode(altered) is None


def test_header_fields_are_authenticated() -> None:
    clock = FakeClock()
    codec = EncryptedCodec([KEY], 3600, "session", clock=clock)
    data = raw(codec.encode(PAYLOAD))
    version, token_key_id, expiry = struct.unpack(">BBQ", data[:10])
    for header in (
        struct.pack(">BBQ", 2, token_key_id, expiry),
        struct.pack(">BBQ", version, token_key_id ^ 1, expiry),
        struct.pack(">BBQ", version, token_key_id, expiry + 86_400),
        struct.pack(">BBQ", version, token_key_id, 0),
    ):
        assert codec.decode(unraw(header + data[10:])) is None


def test_name_is_bound() -> None:
    token = EncryptedCodec([KEY], 3600, "session").encode(PAYLOAD)
    assert EncryptedCodec([KEY], 3600, "session").decode(token) == PAYLOAD
    for name in ("other", "session.1", "Session", "sessio", "session "):
        assert EncryptedCodec([KEY], 3600, name).decode(token) is None
    unlimited = EncryptedCodec([KEY], None, "session").encode(PAYLOAD)
    assert EncryptedCodec([KEY], None, "other").decode(unlimited) is None


def test_expiry_travels_in_the_token() -> None:
    clock = FakeClock()
    codec = EncryptedCodec([KEY], 100, "session", clock=clock)
    token = codec.encode(PAYLOAD)
    clock.now += 99
    assert codec.decode(token) == PAYLOAD
    clock.now += 1
    assert codec.decode(token) is None
    # A codec without max_age still honours the expiry the token carries.
    no_limit = EncryptedCodec([KEY], None, "session", clock=clock)
    assert no_limit.decode(token) is None
    clock.now -= 50
    assert no_limit.decode(token) == PAYLOAD


def test_without_max_age_no_expiry_but_limited_readers_refuse_it() -> None:
    clock = FakeClock()
    forever = EncryptedCodec([KEY], None, "session", clock=clock)
    token = forever.encode(PAYLOAD)
    assert struct.unpack(">Q", raw(token)[2:10]) == (0,)
    clock.now += 10 * 365 * 86_400
    assert forever.decode(token) == PAYLOAD
    assert EncryptedCodec([KEY], 3600, "session", clock=clock).decode(token) is None


def test_max_age_zero_expires_at_once() -> None:
    codec = EncryptedCodec([KEY], 0, "session")
    assert codec.decode(codec.encode(PAYLOAD)) is None


# -- rotation ------------------------------------------------------------------------------------


def test_rotation_first_key_encrypts_all_decrypt() -> None:
    old = EncryptedCodec([OTHER_KEY], 3600, "session")
    rotated = EncryptedCodec([KEY, OTHER_KEY], 3600, "session")
    new_only = EncryptedCodec([KEY], 3600, "session")
    old_token = old.encode(PAYLOAD)
    new_token = rotated.encode(PAYLOAD)
    assert rotated.decode(old_token) == PAYLOAD
    assert rotated.decode(new_token) == PAYLOAD
    assert new_only.decode(new_token) == PAYLOAD
    assert new_only.decode(old_token) is None
    assert old.decode(new_token) is None
    assert raw(new_token)[1] == key_id(KEY)


def test_keys_sharing_a_key_id_are_each_tried() -> None:
    target = key_id(KEY)
    twin = next(
        candidate
        for candidate in (n.to_bytes(2, "big") * 16 for n in count(1))
        if candidate != KEY and key_id(candidate) == target
    )
    token = EncryptedCodec([twin], 3600, "session").encode(PAYLOAD)
    assert EncryptedCodec([KEY, twin], 3600, "session").decode(token) == PAYLOAD
    assert EncryptedCodec([twin, KEY], 3600, "session").decode(token) == PAYLOAD
    assert EncryptedCodec([KEY], 3600, "session").decode(token) is None


# -- through the middleware ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_middleware_round_trip_hides_the_data() -> None:
    client = Client(encryption_key=b64(KEY))
    await client.request(setter(user="alice", secret="s3cr3t-value"))
    value = client.browser.cookies["session"]
    assert set(value) <= URLSAFE
    assert b"s3cr3t" not in raw(value)
    await client.request()
    assert client.seen == {"user": "alice", "secret": "s3cr3t-value"}
    # The signed (Starlette) reader cannot read it, and a signed cookie is not accepted here.
    assert SignedCodec([b"test-secret-for-cookie-chunks"], None).decode(value) is None
    signed = SignedCodec([b"test-secret-for-cookie-chunks"], None).encode(b'{"user": "mallory"}')
    await client.request(cookie=f"session={signed}", apply=False)
    assert client.seen == {}


@pytest.mark.anyio
async def test_middleware_writes_a_new_nonce_each_time() -> None:
    client = Client(encryption_key=KEY)
    values = set()
    for n in range(20):
        await client.request(setter(n=n % 2))
        values.add(client.browser.cookies["session"])
    assert len({raw(v)[10:22] for v in values}) == 20


@pytest.mark.anyio
async def test_renamed_cookie_is_rejected_by_the_middleware() -> None:
    writer = Client(encryption_key=KEY, session_cookie="session")
    await writer.request(setter(user="alice"))
    token = writer.browser.cookies["session"]
    reader = Client(encryption_key=KEY, session_cookie="admin_session")
    await reader.request(cookie=f"admin_session={token}", apply=False)
    assert reader.seen == {}
    await writer.request(cookie=f"session={token}", apply=False)
    assert writer.seen == {"user": "alice"}


@pytest.mark.anyio
async def test_expired_cookie_is_rejected_by_the_middleware() -> None:
    client = Client(encryption_key=KEY, max_age=60)
    payload = json.dumps({"user": "alice"}).encode()
    fresh = EncryptedCodec([KEY], 60, "session").encode(payload)
    stale = EncryptedCodec([KEY], 60, "session", clock=FakeClock(T0 - 1_000_000)).encode(payload)
    await client.request(cookie=f"session={fresh}", apply=False)
    assert client.seen == {"user": "alice"}
    await client.request(cookie=f"session={stale}", apply=False)
    assert client.seen == {}


@pytest.mark.anyio
async def test_middleware_key_rotation() -> None:
    old = Client(encryption_key=OTHER_KEY)
    await old.request(setter(user="alice"))
    rotated = Client(encryption_key=[KEY, OTHER_KEY])
    rotated.browser.cookies = dict(old.browser.cookies)
    await rotated.request()
    assert rotated.seen == {"user": "alice"}
    await rotated.request(setter(seen=True))
    assert raw(rotated.browser.cookies["session"])[1] == key_id(KEY)
    new_only = Client(encryption_key=KEY)
    await new_only.request(cookie=rotated.browser.header(), apply=False)
    assert new_only.seen == {"user": "alice", "seen": True}
    await new_only.request(cookie=old.browser.header(), apply=False)
    assert new_only.seen == {}
