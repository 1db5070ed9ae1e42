"""The one place where session dicts become bytes and back. JSON only, never pickle."""

from __future__ import annotations

import json
from collections.abc import Callable
from json.decoder import JSONDecoder
from json.encoder import JSONEncoder, c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from json.scanner import make_scanner
from typing import Any, Protocol

_DEFAULT_ENCODER = JSONEncoder()
#: The deepest nesting of lists and dicts a session may hold. The parser's own bound is the
#: interpreter's recursion limit less the stack in use when it runs, so what it accepts near
#: that bound could not be written back from a deeper stack; this one does not move.
MAX_DEPTH = 200
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
            value = _parse(data)  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        except RecursionError:  # nested too deep for the parser: hostile, never ours
            raise ValueError("session data is nested too deeply") from None
        if not isinstance(value, dict):
            raise ValueError(f"session data must be a JSON object, not {type(value).__name__}")
        # Fewer containers than the limit cannot nest deeper than it: the walk is for the rare rest.
        if data.count(b"[") + data.count(b"{") > MAX_DEPTH and _deeper_than(value, MAX_DEPTH):
            raise ValueError("session data is nested too deeply")
        return value


def _deeper_than(value: dict[str, Any], limit: int) -> bool:
    """Whether containers in ``value`` nest more than ``limit`` deep (walked without recursion)."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        container, depth = pending.pop()
        if depth > limit:
            return True
        for item in container.values() if isinstance(container, dict) else container:
            if isinstance(item, (dict, list)):
                pending.append((item, depth + 1))
    return False


def _parse(data: bytes) -> Any:
    """``json.loads(data)``, minus its three Python-level steps for the UTF-8 JSON we write."""
    try:
        text = data.decode("utf-8")
        value, end = _SCAN(text, 0)
        if end == len(text):
            return value
    except (ValueError, StopIteration):
        pass
    # Not the shape we write (whitespace, a BOM, UTF-16, junk): json.loads decides.
    return json.loads(data)


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
