"""The dashboard's guards: who may connect, which requests may change state, what is never
shown.

* :func:`is_loopback`: the dashboard binds loopback unless given credentials.
* :class:`BasicAuth`: HTTP Basic authentication on every request (``--auth user:password``).
* :data:`LOOPBACK_NAMES`: on loopback, only these ``Host`` names are served (Starlette's
  ``TrustedHostMiddleware``), so a web page cannot reach the dashboard by rebinding its own
  name to 127.0.0.1.
* :class:`CsrfGuard`: every state change is a POST carrying the page's token, from this
  origin.
* :class:`Redactor`: passwords in driver URLs and AWS credentials are replaced by ``***``
  wherever the dashboard shows text that may contain them.
* :class:`SecurityHeaders`: a Content-Security-Policy without inline scripts, no framing,
  no sniffing, no referrer to other sites.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, unquote, unquote_plus, urlsplit

from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..jobs.errors import ConfigurationError

#: Host names the dashboard answers to when it listens on loopback.
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
#: The environment variable that may hold ``user:password`` instead of ``--auth``.
AUTH_ENV = "GLASSWORK_DASHBOARD_AUTH"
#: Environment variables whose values are never shown.
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", AUTH_ENV)
#: Query parameters of a driver URL whose values are secrets.
_SECRET_PARAM = re.compile(r"pass|secret|token|credential|key", re.IGNORECASE)
MASK = "***"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, IPv6 with or without brackets) is loopback."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def parse_credentials(text: str) -> tuple[str, str]:
    """``user:password`` → ``(user, password)``; both must be non-empty."""
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ConfigurationError(
            "dashboard credentials must look like user:password (both non-empty)"
        )
    return user, password


# -- what is never shown ----------------------------------------------------------------------


def redact_url(url: str) -> str:
    """``url`` with its password and secret-looking query values replaced by ``***``."""
    head, sep, rest = url.partition("?")
    password = urlsplit(head).password
    if password:
        head = head.replace(f":{password}@", f":{MASK}@", 1)
    if not sep:
        return head
    query, hash_, fragment = rest.partition("#")
    pieces = []
    for piece in query.split("&"):
        key, eq, _ = piece.partition("=")
        secret = eq and _SECRET_PARAM.search(unquote_plus(key))
        pieces.append(f"{key}={MASK}" if secret else piece)
    return f"{head}?{'&'.join(pieces)}{hash_}{fragment}"


class Redactor:
    """Replaces known secrets in text: the driver URL's password and secret query values,
    the dashboard's own password, and AWS credentials from the environment."""

    def __init__(self, secrets_: Iterable[str] = ()) -> None:
        # Longest first, so a secret containing another is masked whole.
        found = {s for s in secrets_ if s and len(s) >= 4}
        self._secrets = sorted(found, key=len, reverse=True)

    @classmethod
    def for_settings(
        cls,
        driver_url: str | None,
        password: str | None = None,
        environ: Mapping[str, str] = os.environ,
    ) -> Redactor:
        found = [environ.get(name, "") for name in SECRET_ENV]
        found.append(password or "")
        if driver_url:
            parts = urlsplit(driver_url)
            found.append(parts.password or "")
            found.append(unquote(parts.password or ""))
            found.extend(
                v
                for k, v in parse_qsl(parts.query, keep_blank_values=True)
                if _SECRET_PARAM.search(k)
            )
        env_auth = environ.get(AUTH_ENV, "")
        found.append(env_auth.partition(":")[2])
        return cls(found)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text


# -- ASGI middleware --------------------------------------------------------------------------


class BasicAuth:
    """HTTP Basic authentication of every request against one ``user``/``password``."""

    def __init__(self, app: ASGIApp, user: str, password: str) -> None:
        self.app = app
        self._expected = f"{user}:{password}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._authorized(Headers(scope=scope)):
            await self.app(scope, receive, send)
            return
        response = PlainTextResponse(
            "authentication required",
            status_code=401,
            headers={"WWW-Authenticate": 'Basic realm="glasswork dashboard", charset="UTF-8"'},
        )
        await response(scope, receive, send)

    def _authorized(self, headers: Headers) -> bool:
        scheme, _, encoded = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self._expected)


class SecurityHeaders:
    """Adds the dashboard's security headers to every response."""

    HEADERS = (
        (
            b"content-security-policy",
            b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        # Not no-referrer: with it, browsers send "Origin: null" on our own form POSTs.
        (b"referrer-policy", b"same-origin"),
        (b"cache-control", b"no-store"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- CSRF -------------------------------------------------------------------------------------


class CsrfGuard:
    """The token every form of this dashboard carries, and the check of a POST: the token
    matches, and the request (when the browser says where it comes from) is same-origin."""

    FIELD = "csrf_token"

    def __init__(self, token: str | None = None) -> None:
        self.token = token or secrets.token_urlsafe(32)

    def problem(self, given: str | None, headers: Headers) -> str | None:
        """Why a POST whose form carried the token ``given`` must be refused, or None when
        it may proceed."""
        if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
            return "the form's security token is missing or wrong: reload the page and retry"
        origin = headers.get("origin")
        host = headers.get("host", "").lower()
        if origin is not None and urlsplit(origin).netloc.lower() != host:
            return f"a request from another site ({origin}) cannot change anything here"
        if headers.get("sec-fetch-site") not in (None, "same-origin", "none"):
            return "a request from another site cannot change anything here"
        return None
