"""Session ids: generated from ``secrets``, validated before they reach a store, hashed at rest.

The *public* id travels in the cookie. The store sees the *private* id, ``2-`` followed by the
hex SHA-256 of the public id (the form of Rack's ``private_id``): whoever reads the store, a
backup or a key listing learns no id that a cookie could carry. ``private_id`` is the one
place where that hash is made.
"""

from __future__ import annotations

import functools
import hashlib
import re
import secrets
from typing import TypeGuard

#: 32 bytes = 256 bits of randomness, base64url-encoded to 43 characters.
DEFAULT_ID_BYTES = 32

#: The longest session id accepted anywhere (public or private).
MAX_ID_LENGTH = 128

#: What starts every private id (a hashed public id).
PRIVATE_ID_PREFIX = "2-"

# base64url (our ids) and hex-with-hyphens (0.4.3's uuid4 ids) both fit; nothing that
# could break out of a store key, a file name or a header does.
_VALID_ID = re.compile(rf"[A-Za-z0-9_-]{{16,{MAX_ID_LENGTH}}}")
_PRIVATE_ID = re.compile(r"2-[0-9a-f]{64}")


def new_session_id(nbytes: int = DEFAULT_ID_BYTES) -> str:
    """Return a new random session id with ``nbytes`` bytes of entropy."""
    return secrets.token_urlsafe(nbytes)


def is_valid_session_id(value: object) -> TypeGuard[str]:
    """Return whether ``value`` may be used as a session id (16 to 128 characters of base64url)."""
    return isinstance(value, str) and _VALID_ID.fullmatch(value) is not None


@functools.lru_cache(maxsize=4096)  # a pure function called on every request of a session
def private_id(public_id: str) -> str:
    """Return the store's id for ``public_id``: ``2-`` and the hex SHA-256 of it."""
    return PRIVATE_ID_PREFIX + hashlib.sha256(public_id.encode("ascii")).hexdigest()


def is_private_id(value: str) -> bool:
    """Return whether ``value`` has the form of a private id (never accepted from a cookie)."""
    return _PRIVATE_ID.fullmatch(value) is not None
