"""Set-Cookie text in Starlette's exact format, cookie parsing, and validation of cookie attributes.

Starlette's middleware writes::

    session=<value>; path=/; Max-Age=1209600; httponly; samesite=lax[; secure][; domain=d][; partitioned]

and clears with::

    session=null; path=/; expires=Thu, 01 Jan 1970 00:00:00 GMT; httponly; samesite=lax...

Attribute names, case and order here are the same, so swapping the middleware changes no byte.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from starlette.requests import cookie_parser

from starlette_session.exceptions import ConfigurationError

SameSite = Literal["lax", "strict", "none"]

#: Browsers drop a Set-Cookie header longer than this (RFC 6265 section 6.1 minimum).
MAX_COOKIE_SIZE = 4096

CLEARED_EXPIRES = "expires=Thu, 01 Jan 1970 00:00:00 GMT; "

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

    def __post_init__(self) -> None:
        validate_cookie_name(self.name)
        if not isinstance(self.path, str) or not _PATH.fullmatch(self.path):
            raise ConfigurationError(
                f"invalid cookie path {self.path!r}: it must start with '/' and hold no ';', spaces "
                "or control characters"
            )
        if self.max_age is not None and (
            isinstance(self.max_age, bool) or not isinstance(self.max_age, int) or self.max_age < 0
        ):
            raise ConfigurationError(
                f"invalid max_age {self.max_age!r}: use a number of seconds >= 0, or None for a cookie "
                "that lasts until the browser closes"
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

    def set_header(self, value: str, name: str | None = None) -> str:
        """Return the Set-Cookie header value that stores ``value`` (under ``name``, default the cookie's)."""
        max_age = f"Max-Age={self.max_age}; " if self.max_age is not None else ""
        return f"{name or self.name}={value}; path={self.path}; {max_age}{self.flags}"

    def clear_header(self, name: str | None = None) -> str:
        """Return the Set-Cookie header value that deletes the cookie (``name``, default the cookie's)."""
        return f"{name or self.name}=null; path={self.path}; {CLEARED_EXPIRES}{self.flags}"

    def header_size(self, value_length: int, name: str | None = None) -> int:
        """Return the length of the full ``Set-Cookie: ...`` line for a value of ``value_length``."""
        return len("Set-Cookie: ") + len(self.set_header("", name)) + value_length


def parse_cookies(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Parse the request's Cookie header(s) with Starlette's parser.

    Unlike Starlette, which reads the first Cookie header only, every Cookie header is read
    (HTTP/2 clients may split them); a later cookie of the same name wins.
    """
    cookies: dict[str, str] = {}
    for key, raw in headers:
        if key == b"cookie":
            cookies.update(cookie_parser(raw.decode("latin-1")))
    return cookies
