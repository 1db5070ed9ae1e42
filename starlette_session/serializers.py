"""The one place where session dicts become bytes and back. JSON only, never pickle."""

from __future__ import annotations

import json
from collections.abc import Callable
from json.decoder import JSONDecoder
from json.encoder import JSONEncoder, c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from json.scanner import make_scanner
from typing import Any, Protocol

_DEFAULT_ENCODER = JSONEncoder()
# What json.loads ends in: the scanner of the default decoder (C in CPython).
_SCAN: Callable[[str, int], tuple[Any, int]] = make_scanner(JSONDecoder())  # type: ignore[arg-type]  # typeshed


class Serializer(Protocol):
    """Turns a session dict into bytes and back."""

    def dumps(self, data: dict[str, Any]) -> bytes: ...

    def loads(self, data: bytes) -> dict[str, Any]:
        """Return the dict, or raise ``ValueError`` when ``data`` is not a serialized dict."""
        ...


class JSONSerializer:
    """UTF-8 JSON with the same separators as ``json.dumps`` (and so as Starlette)."""

    def dumps(self, data: dict[str, Any]) -> bytes:
        if c_make_encoder is None:  # pragma: no cover - CPython always has the C encoder
            return json.dumps(data).encode("utf-8")
        # What json.dumps(data) runs, minus its three Python-level calls; a fresh ``markers``
        # dict each time, as json.dumps makes, so circular data still raises ValueError.
        encode = c_make_encoder(
            {}, _DEFAULT_ENCODER.default, encode_basestring_ascii, None, ": ", ", ", False, False, True
        )
        return "".join(encode(data, 0)).encode("utf-8")

    def loads(self, data: bytes) -> dict[str, Any]:
        try:
            # The UTF-8 JSON we write, scanned directly: json.loads(bytes) would first run three
            # Python-level steps (encoding detection, decode, the decoder's checks).
            text = data.decode("utf-8")
            value, end = _SCAN(text, 0)
            if end != len(text):
                raise ValueError("trailing data")
        except RecursionError:  # nested too deep for the parser: hostile, never ours
            raise ValueError("session data is nested too deeply") from None
        except (ValueError, StopIteration):
            # Not the shape we write (whitespace, a BOM, UTF-16, junk): json.loads decides,
            # with its own error (JSONDecodeError and UnicodeDecodeError are ValueErrors).
            try:
                value = json.loads(data)
            except RecursionError:
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
