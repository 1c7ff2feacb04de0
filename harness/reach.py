"""Can a server be reached? One check, one line of why not, for every command that talks to one
(record, chaos, compat --base-url, conformance --live)."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx


class Unreachable(Exception):
    """A server URL that is malformed or answers nothing; the message is one line for the user."""


def checked_url(url: str, flag: str) -> str:
    """`url` if it is an http(s) URL with a host; else Unreachable saying what to write instead."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        hint = f"http://{url}" if "://" not in url else "http://HOST:PORT"
        raise Unreachable(f"{flag} {url!r} is not an http(s) URL: write it as {hint}")
    return url


def reach(url: str, flag: str, timeout: float = 5.0) -> None:
    """Raise Unreachable unless something answers HTTP at `url` (any status will do)."""
    checked_url(url, flag)
    try:
        httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        why = str(exc) or type(exc).__name__
        raise Unreachable(f"{flag} {url} cannot be reached ({why})") from None
