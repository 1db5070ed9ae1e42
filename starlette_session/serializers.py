"""The one place where session dicts become bytes and back. JSON only, never pickle."""

from __future__ import annotations

import json
from typing import Any, Protocol


class Serializer(Protocol):
    """Turns a session dict into bytes and back."""

    def dumps(self, data: dict[str, Any]) -> bytes: ...

    def loads(self, data: bytes) -> dict[str, Any]:
        """Return the dict, or raise ``ValueError`` when ``data`` is not a serialized dict."""
        ...


class JSONSerializer:
    """UTF-8 JSON with the same separators as ``json.dumps`` (and so as Starlette)."""

    def dumps(self, data: dict[str, Any]) -> bytes:
        return json.dumps(data).encode("utf-8")

    def loads(self, data: bytes) -> dict[str, Any]:
        try:
            value = json.loads(data)  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        except RecursionError:  # nested too deep for the parser: hostile, never ours
            raise ValueError("session data is nested too deeply") from None
        if not isinstance(value, dict):
            raise ValueError(f"session data must be a JSON object, not {type(value).__name__}")
        return value


JSON = JSONSerializer()


class MemcacheJSONSerde:
    """starlette-session 0.4.3's pymemcache serde: str as is (flag 1), the rest as JSON (flag 2).

    Kept for users who configured their pymemcache clients with it; the memcache backend
    stores bytes and does not need it.
    """

    def serialize(self, key: Any, value: Any) -> tuple[Any, int]:
        if isinstance(value, str):
            return value, 1
        return json.dumps(value), 2

    def deserialize(self, key: Any, value: Any, flags: int) -> Any:
        if flags == 1:
            return value
        if flags == 2:
            return json.loads(value)
        raise ValueError(f"Unknown flags for value: {flags}")
