"""Cookie codecs: the cookie value <-> the JSON bytes it carries.

``SignedCodec`` is Starlette's wire format, byte for byte: an itsdangerous ``TimestampSigner``
signature over base64 JSON. Cookies written by Starlette's own ``SessionMiddleware`` decode
here and the other way round.
"""

from __future__ import annotations

import binascii
import hmac
from base64 import b64decode
from binascii import b2a_base64
from collections.abc import Sequence
from typing import Protocol

import itsdangerous
from itsdangerous.encoding import base64_decode, base64_encode, bytes_to_int, int_to_bytes
from itsdangerous.exc import BadData
from starlette.datastructures import Secret

from starlette_session.exceptions import ConfigurationError

SecretKey = str | bytes | Secret

_URLSAFE = bytes.maketrans(b"+/", b"-_")


class CookieCodec(Protocol):
    """Turns the session's JSON bytes into a cookie value and back."""

    def encode(self, payload: bytes) -> str:
        """Return the cookie value for ``payload`` (ASCII, safe in a Set-Cookie header)."""
        ...

    def decode(self, value: str) -> bytes | None:
        """Return the payload, or ``None`` for a cookie that is invalid, altered or expired."""
        ...


def normalize_secret_keys(secret_key: SecretKey | Sequence[SecretKey]) -> list[bytes]:
    """Return the keys, newest first, as bytes.

    Args:
        secret_key: one key, or a list of keys whose first is the newest: it signs, and
            every key in the list verifies (for rotation).

    Raises:
        ConfigurationError: no key, an empty key, or a key of the wrong type.
    """
    keys: Sequence[object]
    if isinstance(secret_key, str | bytes | Secret):
        keys = [secret_key]
    elif isinstance(secret_key, Sequence):
        keys = list(secret_key)
    else:
        raise ConfigurationError(
            f"secret_key must be a str, bytes, Secret or a list of them, not {type(secret_key).__name__}"
        )
    if not keys:
        raise ConfigurationError("secret_key is empty; pass a long random string (secrets.token_urlsafe(32))")
    result: list[bytes] = []
    for given in keys:
        key = str(given).encode("utf-8") if isinstance(given, str | Secret) else given
        if not isinstance(key, bytes):
            raise ConfigurationError(
                f"secret_key must be a str, bytes, Secret or a list of them, not {type(key).__name__}"
            )
        if not key:
            raise ConfigurationError(
                "secret_key must not be empty; pass a long random string (secrets.token_urlsafe(32))"
            )
        result.append(key)
    return result


class SignedCodec:
    """Starlette's format: ``TimestampSigner(key).sign(base64(JSON))``, verified fast.

    The format, the key derivation and the clock are itsdangerous' own (``derive_key``,
    ``get_timestamp``), so cookies are byte-identical to Starlette's. What is faster: the
    HMAC is keyed once per key instead of on every call, and a cookie value that verified
    is remembered (bounded), so a browser sending the same cookie again skips the HMAC and
    both base64 decodings; its age is still checked on every request.

    Args:
        secret_keys: newest first; the first signs, all verify.
        max_age: the signature's maximum age in seconds, ``None`` for no limit.
        cache_size: how many verified values to remember (0 turns the cache off).
    """

    #: Values longer than this are verified every time, so the cache stays small.
    CACHEABLE_LENGTH = 2048

    def __init__(self, secret_keys: Sequence[bytes], max_age: int | None, cache_size: int = 1024) -> None:
        # itsdangerous signs with the *last* key of its list.
        self.signer = itsdangerous.TimestampSigner(list(reversed(secret_keys)))
        self.max_age = max_age
        self._macs = [
            hmac.new(self.signer.derive_key(key), digestmod=self.signer.digest_method) for key in secret_keys
        ]
        self._signing_mac = self._macs[0]
        self._cache: dict[str, tuple[bytes, int]] = {}
        self._cache_size = cache_size
        self._stamped_at: int | None = None
        self._stamp = b""

    def _mac(self, key: hmac.HMAC, message: bytes) -> bytes:
        mac = key.copy()
        mac.update(message)
        return mac.digest()

    def encode(self, payload: bytes) -> str:
        now = self.signer.get_timestamp()
        if now != self._stamped_at:  # the encoded time changes once a second: encode it once
            self._stamp = b"." + base64_encode(int_to_bytes(now))
            self._stamped_at = now
        message = b2a_base64(payload, newline=False) + self._stamp
        mac = self._signing_mac.copy()
        mac.update(message)
        # itsdangerous' base64_encode, inlined: urlsafe alphabet, no padding.
        signature = b2a_base64(mac.digest(), newline=False).translate(_URLSAFE).rstrip(b"=")
        return (message + b"." + signature).decode("ascii")

    def decode(self, value: str) -> bytes | None:
        hit = self._cache.get(value)
        if hit is not None:
            payload, signed_at = hit
        else:
            verified = self._verify(value)
            if verified is None:
                return None
            payload, signed_at = verified
            if len(value) <= self.CACHEABLE_LENGTH and self._cache_size:
                if len(self._cache) >= self._cache_size:
                    self._cache.clear()  # cheaper than LRU bookkeeping on every hit
                self._cache[value] = verified
        if self.max_age is not None:
            age = self.signer.get_timestamp() - signed_at
            if age < 0 or age > self.max_age:
                return None
        return payload

    def _verify(self, value: str) -> tuple[bytes, int] | None:
        """Return the payload and signing time of a correctly signed value, else ``None``."""
        try:
            message, dot, signature = value.encode("ascii").rpartition(b".")
            if not dot:
                return None
            # Compare the canonical text, not decoded bytes: base64 lets a last character differ
            # in unused bits and still decode alike; only the exact signature is accepted.
            if not any(
                hmac.compare_digest(base64_encode(self._mac(mac, message)), signature) for mac in self._macs
            ):
                return None
            data, dot, timestamp = message.rpartition(b".")
            if not dot:
                return None
            return b64decode(data, validate=True), bytes_to_int(base64_decode(timestamp))
        except (BadData, UnicodeEncodeError, binascii.Error, ValueError):
            return None
