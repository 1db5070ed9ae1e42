"""Session ids: generated from ``secrets``, validated before they reach a store."""

from __future__ import annotations

import re
import secrets

#: 32 bytes = 256 bits of randomness, base64url-encoded to 43 characters.
DEFAULT_ID_BYTES = 32

# base64url (our ids) and hex-with-hyphens (0.4.3's uuid4 ids) both fit; nothing that
# could break out of a store key, a file name or a header does.
_VALID_ID = re.compile(r"[A-Za-z0-9_-]{16,128}")


def new_session_id(nbytes: int = DEFAULT_ID_BYTES) -> str:
    """Return a new random session id with ``nbytes`` bytes of entropy."""
    return secrets.token_urlsafe(nbytes)


def is_valid_session_id(value: object) -> bool:
    """Return whether ``value`` may be used as a session id (16 to 128 characters of base64url)."""
    return isinstance(value, str) and _VALID_ID.fullmatch(value) is not None
