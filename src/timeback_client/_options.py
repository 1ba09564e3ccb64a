"""The client's options, checked at the call: each validator returns the value the client
keeps, or raises a `ValidationError` that names the argument and the fix (as httpx keeps
its own in ``_config.py``). Nothing here is found out later by a background send.

Also here: `identity_of`, the one-way fingerprint of the credentials a window is sent
with, which the outbox keeps beside each window so it is replayed only as the same student.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import math
import os
from collections.abc import Iterable, Mapping
from typing import Final

import httpx

from ._errors import ValidationError, warn
from ._file_proof import foreign_content
from ._models import TimeOptions, check_sendable

__all__ = [
    "DISABLED_ENV",
    "check_base_url",
    "check_outbox_file",
    "check_pairs",
    "check_text",
    "hold_for_ms",
    "identity_of",
    "is_enabled",
    "is_loopback",
    "time_options",
    "valid_auth",
    "valid_cookies",
    "valid_headers",
]

# ``TIMEBACK_DISABLED``: a client not told ``enabled=`` sends and stores nothing while it
# is set to a yes. The words are sentry-python's (``env_to_bool``), case-insensitive. Any
# other value is refused rather than guessed at: read as "no", a developer's run would
# send to the real backend; read as "yes", a kiosk would silently record no time.
DISABLED_ENV: Final = "TIMEBACK_DISABLED"
_YES: Final = frozenset({"1", "true", "t", "yes", "y", "on"})
_NO: Final = frozenset({"", "0", "false", "f", "no", "n", "off"})


# RFC 9110: a field name is a token; a value is visible ASCII, spaces and tabs.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_FIELD_TEXT = frozenset(map(chr, range(0x20, 0x7F))) | {"\t"}
# What a Cookie header can carry without being split or failing to encode.
_COOKIE_TEXT = frozenset(map(chr, range(0x20, 0x7F))) - {";"}


def check_pairs(
    field: str,
    noun: str,
    pairs: Iterable[tuple[object, object]],
    allowed: frozenset[str],
    allowed_text: str,
    fix: str,
) -> None:
    """Each name an RFC 9110 token and each value text of ``allowed``, or a
    `ValidationError` naming the one that is not."""
    for name, value in pairs:
        if not isinstance(name, str) or not name or not set(name) <= _TOKEN:
            raise ValidationError(
                field, f"{name!r} is not a {noun} name", "Use letters, digits and '-'."
            )
        if not isinstance(value, str) or not set(value) <= allowed:
            raise ValidationError(
                f"{field}[{name!r}]", f"is not a {noun} value ({allowed_text})", fix
            )


def valid_headers(headers: object) -> httpx.Headers:
    """Headers that can go on the wire, or a `ValidationError` naming the one that cannot
    (checked here, not found by a background send)."""
    if not isinstance(headers, Mapping):
        raise ValidationError(
            "headers",
            f"{type(headers).__name__} is not a mapping",
            'Pass e.g. {"Authorization": "Bearer <token>"}.',
        )
    check_pairs(
        "headers",
        "header",
        headers.items(),
        _FIELD_TEXT,
        "text in visible ASCII, no line breaks",
        "Pass the value as the server expects it, e.g. a token as is.",
    )
    return httpx.Headers(headers)


def valid_cookies(cookies: object) -> httpx.Cookies | None:
    """Cookies that can go on the wire (None for none), or a `ValidationError`."""
    pairs: list[tuple[object, object]]
    if isinstance(cookies, httpx.Cookies):
        pairs = [(cookie.name, cookie.value) for cookie in cookies.jar]
    elif isinstance(cookies, Mapping):
        pairs = list(cookies.items())
    else:
        raise ValidationError(
            "cookies",
            f"{type(cookies).__name__} is not a mapping",
            'Pass e.g. {"session": "<value>"} or an httpx.Cookies.',
        )
    check_pairs(
        "cookies",
        "cookie",
        pairs,
        _COOKIE_TEXT,
        "ASCII text without ';' or line breaks",
        "Pass the value the server set, as it set it.",
    )
    if not pairs:
        return None
    return (
        cookies
        if isinstance(cookies, httpx.Cookies)
        else httpx.Cookies({str(n): str(v) for n, v in pairs})
    )


def is_enabled(enabled: object) -> bool:
    """``enabled=`` if given, else what ``TIMEBACK_DISABLED`` says (see `DISABLED_ENV`)."""
    if enabled is not None:
        if not isinstance(enabled, bool):
            raise ValidationError(
                "enabled",
                f"{enabled!r} is not True, False or None",
                f"Pass False to send and store nothing, or leave it out to follow {DISABLED_ENV}.",
            )
        return enabled
    value = os.environ.get(DISABLED_ENV, "")
    word = value.strip().lower()
    if word in _YES:
        return False
    if word in _NO:
        return True
    raise ValidationError(
        DISABLED_ENV,
        f"{value!r} is not a yes or a no",
        "Set it to 1 (or true, yes, on) to send and store nothing, or to 0 or nothing to "
        "send; or pass enabled= to the client.",
    )


def hold_for_ms(hold_for: object) -> int:
    """``hold_for=`` in ms, or a `ValidationError` naming the fix."""
    seconds = hold_for.total_seconds() if isinstance(hold_for, datetime.timedelta) else hold_for
    if (
        isinstance(seconds, bool)
        or not isinstance(seconds, int | float)
        or not math.isfinite(seconds)
        or seconds <= 0
    ):
        raise ValidationError(
            "hold_for",
            f"{hold_for!r} is not a positive number of seconds or a timedelta",
            "Pass e.g. datetime.timedelta(days=7) (the default), or seconds.",
        )
    return round(seconds * 1000)


def check_text(field: str, value: object, example: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(
            field, f"{value!r} is not a non-empty string", f"Pass e.g. {example}."
        )
    check_sendable(field, value)


def check_outbox_file(outbox: str | os.PathLike[str] | None) -> None:
    """A path the app named holds an outbox, or nothing yet: anything else is refused here,
    at the call, and left exactly as it is (a read of its first bytes; nothing is written)."""
    if outbox is None:
        return
    if not isinstance(outbox, str | os.PathLike):
        raise ValidationError(
            "outbox",
            f"{outbox!r} is not a path",
            'Pass a file path of its own, e.g. data_dir / "timeback-outbox.sqlite3", or None.',
        )
    try:
        problem = foreign_content(outbox)
    except OSError:
        return  # cannot look now (a permission, a disk): the outbox writer reports it
    if problem is not None:
        raise ValidationError(
            "outbox",
            f"{os.fspath(outbox)} {problem}, not a timeback-client outbox; the SDK left it "
            "as it is",
            "Pass a path of the outbox's own (the SDK creates it), e.g. "
            'data_dir / "timeback-outbox.sqlite3", or leave outbox= out for the default place.',
        )


def time_options(time: bool | TimeOptions) -> TimeOptions:
    if isinstance(time, TimeOptions):
        return time
    if time is True or time is False:
        return TimeOptions()
    raise ValidationError(
        "time", f"{time!r} is not True, False or TimeOptions", "Pass TimeOptions(...) to tune."
    )


def valid_auth(auth: httpx.Auth | tuple[str, str] | None) -> httpx.Auth | None:
    if auth is None or isinstance(auth, httpx.Auth):
        return auth
    if isinstance(auth, tuple) and len(auth) == 2:
        return httpx.BasicAuth(*auth)
    raise ValidationError("auth", f"{type(auth).__name__} is not an httpx.Auth", "Pass httpx.Auth.")


def check_base_url(base_url: object) -> str:
    fix = 'Pass the backend mount, e.g. "https://app.example/api/timeback".'
    if not isinstance(base_url, str):
        raise ValidationError("base_url", f"{base_url!r} is not a URL", fix)
    check_sendable("base_url", base_url)
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ValidationError("base_url", f"{base_url!r} is not a URL ({exc})", fix) from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ValidationError("base_url", f"{base_url!r} is not an absolute http(s) URL", fix)
    if url.query or url.fragment:
        raise ValidationError("base_url", "has a query or fragment", fix)
    if url.scheme == "http" and not is_loopback(url.host):
        # The host only: a URL may carry credentials (user:password@), which are never shown.
        warn(
            f"base_url to {url.host} is plain http: the app's credentials and the student's "
            "time would cross the network unencrypted. Use https:// (plain http is for this "
            "machine only: localhost, 127.0.0.1, ::1)."
        )
    return base_url.rstrip("/")


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def identity_of(base_url: str, headers: Mapping[str, str], cookies: Mapping[str, str]) -> str:
    """A one-way fingerprint of where and as whom windows are sent (never the secrets)."""
    digest = hashlib.sha256(base_url.encode())
    for name, value in sorted((k.lower(), v) for k, v in headers.items()):
        if name in ("authorization", "cookie") or name.startswith("x-"):
            digest.update(f"\0{name}\0{value}".encode())
    for name, value in sorted(cookies.items()):
        digest.update(f"\0cookie:{name}\0{value}".encode())
    return digest.hexdigest()
