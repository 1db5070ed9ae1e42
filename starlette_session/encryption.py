"""Encrypted cookie sessions: AES-GCM, so the client can neither read nor alter its session.

Token (before base64): ``version (1) | key id (1) | expiry (8, big-endian Unix seconds, 0 for
none) | nonce (12) | ciphertext | tag (16)``, sent as urlsafe base64 without padding.

The first ten bytes travel in clear but are authenticated, together with the cookie's name, as
the cipher's associated data: a token cannot be moved to another cookie name, nor have its
expiry pushed back. The ``cryptography`` package is imported only when a codec is built.
"""

from __future__ import annotations

import binascii
import hashlib
import os
import re
import struct
import time
from base64 import urlsafe_b64decode, urlsafe_b64encode
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from starlette.datastructures import Secret

from starlette_session.exceptions import ConfigurationError, MissingDependencyError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

EncryptionKey = str | bytes | Secret

#: The token format's version: the first byte of every token.
VERSION = 1
#: Seconds of clock slack when a token's expiry is checked against the current ``max_age``.
MAX_AGE_SLACK = 1
_HEADER = struct.Struct(">BBQ")  # version, key id, expiry
_NONCE_BYTES = 12  # 96 bits: the size AES-GCM is specified for
_TAG_BYTES = 16
_MIN_TOKEN_BYTES = _HEADER.size + _NONCE_BYTES + _TAG_BYTES
_AAD_LABEL = b"starlette-session/aes-gcm\x00"
_KEY_SIZES = (16, 24, 32)
_URLSAFE = re.compile(r"[A-Za-z0-9_-]+")

GENERATE_KEY_COMMAND = (
    'python -c "import secrets, base64; print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())"'
)


def _bad_key(problem: str) -> ConfigurationError:
    return ConfigurationError(
        f"invalid encryption_key: {problem}. Use 16, 24 or 32 random bytes, or the same as urlsafe "
        f"base64 text; generate one with: {GENERATE_KEY_COMMAND}"
    )


def _parse_key(given: object) -> bytes:
    if isinstance(given, bytes):
        if len(given) not in _KEY_SIZES:
            raise _bad_key(
                f"a bytes key must be 16, 24 or 32 raw bytes, not {len(given)} "
                "(pass a base64 key as str, e.g. key.decode())"
            )
        return given
    if not isinstance(given, str | Secret):
        raise _bad_key(f"expected str, bytes, Secret or a list of them, not {type(given).__name__}")
    text = str(given).strip().rstrip("=").replace("+", "-").replace("/", "_")
    if not _URLSAFE.fullmatch(text) or len(text) % 4 == 1:
        raise _bad_key("a str key must be base64 text")
    key = urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if len(key) not in _KEY_SIZES:
        raise _bad_key(f"the base64 text decodes to {len(key)} bytes, not 16, 24 or 32")
    return key


def normalize_encryption_keys(encryption_key: EncryptionKey | Sequence[EncryptionKey]) -> list[bytes]:
    """Return the AES keys, newest first, as raw bytes.

    Args:
        encryption_key: one key, or a list whose first key encrypts and whose every key
            decrypts (for rotation). A key is 16, 24 or 32 raw ``bytes`` (AES-128/192/256),
            or a ``str`` (or ``Secret``) holding such bytes in urlsafe base64.

    Raises:
        ConfigurationError: no key, or a key that is not a valid AES key; the message says
            how to generate one.
    """
    keys: Sequence[object]
    if isinstance(encryption_key, str | bytes | Secret):
        keys = [encryption_key]
    elif isinstance(encryption_key, Sequence):
        keys = list(encryption_key)
    else:
        raise _bad_key(f"expected str, bytes, Secret or a list of them, not {type(encryption_key).__name__}")
    if not keys:
        raise _bad_key("the list of keys is empty")
    return [_parse_key(key) for key in keys]


def key_id(key: bytes) -> int:
    """Return the one-byte id that tells which key encrypted a token (not secret, not unique)."""
    return hashlib.sha256(b"starlette-session key id\x00" + key).digest()[0]


def _aesgcm() -> type[AESGCM]:
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415 - optional
    except ImportError as exc:
        raise MissingDependencyError("cryptography", "cryptography") from exc
    return AESGCM


class EncryptedCodec:
    """AES-GCM cookie values bound to the cookie's name and carrying their own expiry.

    Same interface as ``SignedCodec``: ``decode`` returns ``None`` for anything but an
    unaltered, unexpired token made by one of the keys for this cookie name.

    Args:
        keys: raw AES keys (see ``normalize_encryption_keys``), newest first: the first
            encrypts, every one decrypts.
        max_age: seconds a token stays valid; ``None`` for no expiry (then tokens that do
            carry one are still checked against it).
        cookie_name: the name of the cookie the tokens are sent in.
        clock: returns the current Unix time; for tests.

    Raises:
        ConfigurationError: a key of the wrong size.
        MissingDependencyError: ``cryptography`` is not installed.
    """

    def __init__(
        self,
        keys: Sequence[bytes],
        max_age: int | None,
        cookie_name: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        aesgcm = _aesgcm()
        from cryptography.exceptions import InvalidTag  # noqa: PLC0415 - optional dependency

        self._invalid_tag = InvalidTag
        keys = normalize_encryption_keys(list(keys))
        self._encrypt_id = key_id(keys[0])
        self._encrypter = aesgcm(keys[0])
        self._decrypters: dict[int, list[AESGCM]] = {}
        for key in keys:
            self._decrypters.setdefault(key_id(key), []).append(aesgcm(key))
        self.max_age = max_age
        self._name = cookie_name.encode("utf-8")
        self.clock = clock

    def _associated_data(self, header: bytes) -> bytes:
        return _AAD_LABEL + header + self._name

    def encode(self, payload: bytes) -> str:
        """Return a fresh token for ``payload``: new nonce, expiry ``max_age`` from now."""
        # At least 1: 0 means "no expiry", and a negative max_age must still give an expired token.
        expiry = 0 if self.max_age is None else max(1, int(self.clock()) + self.max_age)
        header = _HEADER.pack(VERSION, self._encrypt_id, expiry)
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._encrypter.encrypt(nonce, payload, self._associated_data(header))
        return urlsafe_b64encode(header + nonce + sealed).rstrip(b"=").decode("ascii")

    def decode(self, value: str) -> bytes | None:
        """Return the payload, or ``None`` for a token that is malformed, altered, expired,
        made for another cookie name or by an unknown key. Never raises on bad input."""
        raw = _strict_b64decode(value)
        if raw is None or len(raw) < _MIN_TOKEN_BYTES:
            return None
        version, token_key_id, expiry = _HEADER.unpack_from(raw)
        if version != VERSION:
            return None
        if expiry:
            now = self.clock()
            if now >= expiry:
                return None
            # Issued under a longer max_age than today's: honour the current limit.
            if self.max_age is not None and expiry > now + self.max_age + MAX_AGE_SLACK:
                return None
        elif self.max_age is not None:
            return None  # made while max_age was None: never let it outlive the current limit
        header = raw[: _HEADER.size]
        nonce = raw[_HEADER.size : _HEADER.size + _NONCE_BYTES]
        sealed = raw[_HEADER.size + _NONCE_BYTES :]
        associated_data = self._associated_data(header)
        for cipher in self._decrypters.get(token_key_id, ()):
            try:
                return cipher.decrypt(nonce, sealed, associated_data)
            except (self._invalid_tag, ValueError):
                continue
        return None


def _strict_b64decode(value: object) -> bytes | None:
    """Decode unpadded urlsafe base64, accepting only its one canonical spelling."""
    if not isinstance(value, str) or not _URLSAFE.fullmatch(value) or len(value) % 4 == 1:
        return None
    try:
        raw = urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        return None
    # Unused low bits of the last character would otherwise give several spellings of one token.
    if urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != value:
        return None
    return raw
