"""Set-Cookie text in Starlette's exact format, cookie parsing, and validation of cookie attributes.

Starlette's middleware writes::

    session=<value>; path=/; Max-Age=1209600; httponly; samesite=lax[; secure][; domain=d][; partitioned]

and clears with::

    session=null; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT; httponly; samesite=lax...

Attribute names, case and order here are the same, so swapping the middleware changes no byte.

A cookie session too large for one cookie is split (``CookieJar``): when the full
``Set-Cookie:`` line would pass 4096 bytes, the cookie ``<name>`` holds ``chunks.<n>`` and the
value is cut into ``<name>.1`` ... ``<name>.<n>``, each line within 4096 bytes. A session that
fits is exactly Starlette's single cookie.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from starlette_session.exceptions import ConfigurationError, SessionTooLargeError

SameSite = Literal["lax", "strict", "none"]

#: Browsers drop a Set-Cookie header longer than this (RFC 6265 section 6.1 minimum).
MAX_COOKIE_SIZE = 4096

CLEARED_EXPIRES = "expires=Thu, 01 Jan 1970 00:00:00 GMT; "

#: The default ceiling on a split session: the bytes its cookies add to the request's Cookie
#: header. nginx (8 KiB per header line) and gunicorn (8190 bytes per field) refuse a longer
#: Cookie header by default, and it also holds the site's other cookies.
DEFAULT_MAX_COOKIE_SIZE = 8192

#: The value of ``<name>`` when the session is split: ``chunks.<n>``. It can never be a signed
#: or encrypted value, so an old reader just sees an invalid cookie.
CHUNK_MARKER = "chunks."

# RFC 6265 cookie-name: an RFC 2616 token.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"\.?{_LABEL}(?:\.{_LABEL})*")
# A path may hold any printable ASCII but ';' (RFC 6265 path-value).
_PATH = re.compile(r"/[\x21-\x3a\x3c-\x7e]*")
_SAME_SITE = ("lax", "strict", "none")


def validate_cookie_name(name: str) -> str:
    """Return ``name`` if it is a valid cookie name.

    Raises:
        ConfigurationError: the name is empty or holds characters that are not allowed.
    """
    if not isinstance(name, str) or not _TOKEN.fullmatch(name):
        raise ConfigurationError(
            f"invalid cookie name {name!r}: use letters, digits and !#$%&'*+-.^_`|~ only, e.g. 'session'"
        )
    return name


@dataclass(frozen=True)
class CookieSettings:
    """The attributes of the session cookie, validated once, and the header text built from them.

    Raises:
        ConfigurationError: from the constructor, for any attribute that could not be sent as is.
    """

    name: str
    path: str = "/"
    max_age: int | None = 14 * 24 * 60 * 60
    same_site: str = "lax"
    secure: bool = False
    domain: str | None = None
    partitioned: bool = False
    httponly: bool = True
    flags: str = field(init=False)
    # What follows the value in a Set-Cookie header that stores it, and in one that clears it.
    _set_suffix: str = field(init=False, repr=False, compare=False)
    _clear_suffix: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        validate_cookie_name(self.name)
        if not isinstance(self.path, str) or not _PATH.fullmatch(self.path):
            raise ConfigurationError(
                f"invalid cookie path {self.path!r}: it must start with '/' and hold no ';', spaces "
                "or control characters"
            )
        # A negative max_age is allowed, as in Starlette: the cookie expires at once and every
        # signed value counts as expired.
        if self.max_age is not None and (isinstance(self.max_age, bool) or not isinstance(self.max_age, int)):
            raise ConfigurationError(
                f"invalid max_age {self.max_age!r}: use a whole number of seconds (0 or less: the cookie "
                "expires at once), or None for a cookie that lasts until the browser closes"
            )
        if not isinstance(self.same_site, str) or self.same_site.lower() not in _SAME_SITE:
            raise ConfigurationError(f"invalid same_site {self.same_site!r}: use 'lax', 'strict' or 'none'")
        if self.domain is not None and (
            not isinstance(self.domain, str) or len(self.domain) > 253 or not _DOMAIN.fullmatch(self.domain)
        ):
            raise ConfigurationError(
                f"invalid cookie domain {self.domain!r}: use a host name such as 'example.com', or None"
            )
        flags = f"samesite={self.same_site}"
        if self.httponly:
            flags = "httponly; " + flags
        if self.secure:
            flags += "; secure"
        if self.domain is not None:
            flags += f"; domain={self.domain}"
        if self.partitioned:
            flags += "; partitioned"
        object.__setattr__(self, "flags", flags)
        max_age = f"Max-Age={self.max_age}; " if self.max_age is not None else ""
        object.__setattr__(self, "_set_suffix", f"; path={self.path}; {max_age}{flags}")
        object.__setattr__(self, "_clear_suffix", f"=null; path={self.path}; {CLEARED_EXPIRES}{flags}")

    def set_header(self, value: str, name: str | None = None) -> str:
        """Return the Set-Cookie header value that stores ``value`` (under ``name``, default the cookie's)."""
        return f"{name or self.name}={value}{self._set_suffix}"

    def clear_header(self, name: str | None = None) -> str:
        """Return the Set-Cookie header value that deletes the cookie (``name``, default the cookie's)."""
        return (name or self.name) + self._clear_suffix

    def header_size(self, value_length: int, name: str | None = None) -> int:
        """Return the length of the full ``Set-Cookie: ...`` line for a value of ``value_length``."""
        return len("Set-Cookie: ") + len(self.set_header("", name)) + value_length


def parse_cookies(headers: Iterable[tuple[bytes, bytes]], name: str) -> dict[str, str]:
    """Return the session's cookies in the request: ``name`` and its chunks ``<name>.<n>``.

    Nothing is unquoted and no other cookie is looked at beyond its name, so a hostile
    Cookie header costs time linear in its length (``http.cookies``' unquoting is quadratic
    before CPython 3.11.10 / 3.12.6, CVE-2024-7592). A value holding ``"`` or ``\\`` is never
    one of ours (signed and encrypted values are base64url and dots) and is ignored. Every
    Cookie header is read (HTTP/2 clients may split them); a later cookie of the same name wins.
    """
    cookies: dict[str, str] = {}
    chunk_prefix = name + "."
    for key, raw in headers:
        if key != b"cookie":
            continue
        text = raw.decode("latin-1")
        if name not in text:  # the common case of a request without our cookie: one scan
            continue
        for pair in text.split(";"):
            cookie_name, sep, value = pair.partition("=")
            if not sep:
                continue
            cookie_name = cookie_name.strip()
            if cookie_name != name and not (
                cookie_name.startswith(chunk_prefix) and _is_chunk_index(cookie_name[len(chunk_prefix) :])
            ):
                continue
            value = value.strip()
            if '"' in value or "\\" in value:
                continue
            cookies[cookie_name] = value
    return cookies


def _is_chunk_index(text: str) -> bool:
    return 0 < len(text) <= 3 and text.isascii() and text.isdigit()


def chunk_name(name: str, index: int) -> str:
    """Return the name of chunk ``index`` (from 1) of the cookie ``name``: ``<name>.<index>``."""
    return f"{name}.{index}"


def _request_size(pairs: Iterable[tuple[str, str]]) -> int:
    """Return the bytes ``pairs`` take in a Cookie request header (``a=1; b=2``)."""
    return len("; ".join(f"{name}={value}" for name, value in pairs))


class CookieJar:
    """Writes a cookie value as one cookie, or split over numbered chunk cookies, and reads it back.

    Args:
        settings: the cookie's name and attributes.
        split: split a value whose Set-Cookie line would pass 4096 bytes; when ``False``,
            such a value raises ``SessionTooLargeError`` instead.
        max_size: the most bytes the session's cookies may add to the request's Cookie
            header (``name=value`` pairs joined by ``"; "``), split or not.

    Raises:
        ConfigurationError: ``max_size`` is not a positive int, or the cookie's attributes
            leave no room for a value in a 4096-byte line.
    """

    def __init__(
        self, settings: CookieSettings, *, split: bool = True, max_size: int = DEFAULT_MAX_COOKIE_SIZE
    ) -> None:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ConfigurationError(
                f"invalid max_cookie_size {max_size!r}: use a number of bytes >= 1 "
                f"(default {DEFAULT_MAX_COOKIE_SIZE})"
            )
        self.settings = settings
        self.split = split
        self.max_size = max_size
        self.max_chunks = self._chunk_count(max_size) if split else 0
        if settings.header_size(len(CHUNK_MARKER) + len(str(self.max_chunks))) > MAX_COOKIE_SIZE or (
            split and self._capacity(self.max_chunks) < 1
        ):
            raise ConfigurationError(
                "the session cookie's name, path and domain are too long to leave room for a value "
                f"in a {MAX_COOKIE_SIZE}-byte Set-Cookie header"
            )
        # The longest value that fits in one cookie, and in the request's Cookie header as
        # ``name=value``: worked out once, so a small session costs two length comparisons.
        self._single_capacity = MAX_COOKIE_SIZE - settings.header_size(0)
        self._single_max_value = max_size - len(settings.name) - 1
        name = re.escape(settings.name)
        # Canonical numbers only: "session.01" or "session.x" are someone else's cookies.
        self._chunk_pattern = re.compile(rf"{name}\.([1-9][0-9]{{0,8}})")

    def _capacity(self, index: int) -> int:
        return MAX_COOKIE_SIZE - self.settings.header_size(0, chunk_name(self.settings.name, index))

    def _chunk_count(self, length: int) -> int:
        count = 0
        while length > 0:
            count += 1
            capacity = self._capacity(count)
            if capacity < 1:
                break
            length -= capacity
        return count

    def carried_chunks(self, cookies: Mapping[str, str]) -> tuple[str, ...]:
        """Return the names of this cookie's chunks that the request carried, in numeric order."""
        found: list[tuple[int, str]] = []
        for name in cookies:
            match = self._chunk_pattern.fullmatch(name)
            if match is not None and int(match.group(1)) <= self.max_chunks:
                found.append((int(match.group(1)), name))
        return tuple(name for _, name in sorted(found))

    def read(self, cookies: Mapping[str, str]) -> str | None:
        """Return the cookie's value, joined from its chunks if split; ``None`` if absent or a
        chunk is missing."""
        value = cookies.get(self.settings.name)
        if value is None or not value.startswith(CHUNK_MARKER):
            return value
        count = value[len(CHUNK_MARKER) :]
        # Bounded before int(): a count of thousands of digits is refused, not parsed.
        if not self.split or not 0 < len(count) <= 3 or not count.isascii() or not count.isdigit():
            return None
        if count.startswith("0") or int(count) > self.max_chunks:
            return None
        parts: list[str] = []
        for index in range(1, int(count) + 1):
            part = cookies.get(chunk_name(self.settings.name, index))
            if not part:
                return None
            parts.append(part)
        return "".join(parts)

    def _too_large(self, size: int, *, ceiling: bool) -> SessionTooLargeError:
        hint = "store less in the session (ids rather than objects) or keep it server-side with a backend"
        if ceiling:
            return SessionTooLargeError(
                size,
                self.max_size,
                f"raise max_cookie_size if your servers and proxies accept a longer Cookie header, or {hint}",
            )
        return SessionTooLargeError(size, MAX_COOKIE_SIZE, f"enable split_cookies, or {hint}")

    def set_headers(self, value: str, carried: Iterable[str] = ()) -> list[str]:
        """Return the Set-Cookie values that store ``value``, expiring every ``carried`` chunk
        they do not overwrite.

        Raises:
            SessionTooLargeError: the value is over ``max_size``, or needs splitting while
                splitting is off. Never sends a cookie a browser would silently drop.
        """
        name = self.settings.name
        if len(value) <= self._single_capacity:
            if len(value) > self._single_max_value:
                raise self._too_large(_request_size([(name, value)]), ceiling=True)
            header = self.settings.set_header(value)
            if not carried:
                return [header]
            return [header, *map(self.settings.clear_header, carried)]
        line = self.settings.header_size(len(value))
        if not self.split:
            raise self._too_large(line, ceiling=False)
        if len(value) > self.max_size:  # cheap early refusal before cutting a huge value
            raise self._too_large(len(value), ceiling=True)
        pairs: list[tuple[str, str]] = []
        start = 0
        while start < len(value):
            index = len(pairs) + 1
            end = start + self._capacity(index)
            pairs.append((chunk_name(name, index), value[start:end]))
            start = end
        pairs.insert(0, (name, f"{CHUNK_MARKER}{len(pairs)}"))
        size = _request_size(pairs)
        if size > self.max_size:
            raise self._too_large(size, ceiling=True)
        written = {chunk for chunk, _ in pairs}
        return [
            *(self.settings.set_header(part, chunk) for chunk, part in pairs),
            *(self.settings.clear_header(chunk) for chunk in carried if chunk not in written),
        ]

    def clear_headers(self, carried: Iterable[str] = (), *, main: bool = True) -> list[str]:
        """Return the Set-Cookie values that delete the cookie (if ``main``) and its ``carried`` chunks."""
        headers = [self.settings.clear_header()] if main else []
        headers.extend(self.settings.clear_header(chunk) for chunk in carried)
        return headers
