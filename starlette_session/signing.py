"""Cookie codecs: the cookie value <-> the JSON bytes it carries.

``SignedCodec`` is Starlette's wire format, byte for byte: an itsdangerous ``TimestampSigner``
signature over base64 JSON. Cookies written by Starlette's own ``SessionMiddleware`` decode
here and the other way round.
"""

from __future__ import annotations

import binascii
from base64 import b64decode, b64encode
from collections.abc import Sequence
from typing import Protocol

import itsdangerous
from itsdangerous.exc import BadSignature
from starlette.datastructures import Secret

from starlette_session.exceptions import ConfigurationError

SecretKey = str | bytes | Secret


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
    """Starlette's format: ``TimestampSigner(key).sign(base64(JSON))``.

    Args:
        secret_keys: newest first; the first signs, all verify.
        max_age: the signature's maximum age in seconds, ``None`` for no limit.
    """

    def __init__(self, secret_keys: Sequence[bytes], max_age: int | None) -> None:
        # itsdangerous signs with the *last* key of its list.
        self.signer = itsdangerous.TimestampSigner(list(reversed(secret_keys)))
        self.max_age = max_age

    def encode(self, payload: bytes) -> str:
        return self.signer.sign(b64encode(payload)).decode("ascii")

    def decode(self, value: str) -> bytes | None:
        try:
            signed = value.encode("ascii")
            return b64decode(self.signer.unsign(signed, max_age=self.max_age), validate=True)
        except (BadSignature, UnicodeEncodeError, binascii.Error, ValueError):
            return None
