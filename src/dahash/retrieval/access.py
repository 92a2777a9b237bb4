"""The API key of ``dahash serve``: where it comes from, and the check every route but ``/health`` passes.

A client sends the key as ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``. The web page cannot set
headers on a navigation, so ``GET /`` without the key answers a small form that posts the key to
``/login`` (in the body, never in a URL an access log records), which sets it as an HttpOnly,
SameSite=Strict cookie; the page's own requests then carry the cookie. Keys are compared in constant
time (:func:`hmac.compare_digest`), and no message or log line ever holds one.
"""

from __future__ import annotations

import hmac
import os
from pathlib import Path

from dahash.errors import ConfigError, DataError

#: The environment variable ``dahash serve`` reads the key from when no ``--api-key-file`` is given.
KEY_ENV = "DAHASH_API_KEY"
COOKIE = "dahash_key"
#: Routes anyone may call: a load balancer's health check.
OPEN_PATHS = frozenset({"/health", "/login"})
#: Hosts that only this machine can reach.
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
MIN_KEY_LENGTH = 16

LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>dahash: key</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 28rem; margin: 4rem auto">
<h1 style="font-size: 1.3rem">dahash search</h1><p>This server needs its API key.</p>
<form method="post" action="login"><input type="password" name="key" autocomplete="current-password"
 style="width: 100%; padding: .5rem" aria-label="API key" autofocus>
<p><button type="submit">Open</button></p></form></body></html>"""


def read_key(key_file: str | os.PathLike | None = None) -> str | None:
    """The API key from ``key_file`` (its first line, stripped), else ``$DAHASH_API_KEY``, else None; a key
    shorter than :data:`MIN_KEY_LENGTH` characters is refused (a message that never shows it)."""
    if key_file is not None:
        try:
            lines = Path(key_file).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            raise DataError(f"{key_file}: API key file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{key_file}: cannot read the API key file ({type(exc).__name__})") from None
        key, source = (lines[0].strip() if lines else ""), str(key_file)
    else:
        key, source = os.environ.get(KEY_ENV, "").strip(), f"${KEY_ENV}"
        if not key:
            return None
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigError(f"{source}: the API key must be at least {MIN_KEY_LENGTH} characters "
                          "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')")
    return key


def check_exposure(host: str, key: str | None, allow_no_key: bool) -> None:
    """ConfigError for a server reachable beyond this machine without a key, unless ``allow_no_key`` says so."""
    if host not in LOOPBACK and key is None and not allow_no_key:
        raise ConfigError(f"--host {host} serves the index and its file paths beyond this machine: give an API key "
                          f"(--api-key-file FILE or ${KEY_ENV}), or --allow-no-key to serve without one")


def key_matches(key: str, offered: str | None) -> bool:
    """Whether ``offered`` is ``key``, in time that does not depend on where they differ."""
    return offered is not None and hmac.compare_digest(key.encode(), offered.encode())


def offered_key(headers: dict[str, str], cookies: dict[str, str]) -> str | None:
    """The key a request offers: the Bearer token, else ``X-API-Key``, else the page's cookie."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return headers.get("x-api-key") or cookies.get(COOKIE)
