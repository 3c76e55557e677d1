"""Who may see the dashboard and who may act through it.

Three checks, each answering with a page that says what was refused and why:

* **The token** (optional): with one set, every page but the login page and the static
  files needs the login cookie (or ``Authorization: Bearer <token>``, for scripts). The
  cookie holds an HMAC of the token, never the token, so it survives restarts and works
  across processes that share the token, and changing the token logs everyone out.
* **Read-only**: every action (a POST) is refused with 403.
* **Cross-site requests**: an action must come from a page of the dashboard itself. Two
  checks, both must pass: the browser's ``Origin`` (and ``Sec-Fetch-Site``) headers must
  name this host, and the form's ``csrf`` field must equal the per-session ``qtasks_csrf``
  cookie (a random value set on the first page; a site elsewhere can neither read it nor
  set it). The cookies are ``HttpOnly`` and ``SameSite=Strict``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["AUTH_COOKIE", "CSRF_COOKIE", "Guard", "Refusal"]

AUTH_COOKIE: Final = "qtasks_auth"
CSRF_COOKIE: Final = "qtasks_csrf"
#: Browsers that fetch from a page elsewhere say so in this header (all current ones).
_CROSS_SITE: Final = frozenset({"cross-site", "same-site"})


class Refusal(Exception):
    """A request the dashboard refuses: the HTTP status and the sentence to show."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Guard:
    """The token, read-only and cross-site checks of one dashboard."""

    def __init__(self, *, token: str | None, read_only: bool) -> None:
        if token is not None and not token.strip():
            raise ValueError("token is empty: give a non-empty token, or None for no login")
        self.read_only = read_only
        self._token = token
        self._proof = (
            None
            if token is None
            else hmac.new(token.encode(), b"qtasks-web-login", hashlib.sha256).hexdigest()
        )

    @property
    def has_token(self) -> bool:
        """Whether pages need a login."""
        return self._token is not None

    # -- the token ---------------------------------------------------------------------

    def logged_in(self, request: Request) -> bool:
        """Whether ``request`` carries the login cookie or the token itself."""
        if self._token is None or self._proof is None:
            return True
        cookie = request.cookies.get(AUTH_COOKIE, "")
        if cookie and hmac.compare_digest(cookie.encode(), self._proof.encode()):
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and self.token_matches(given)

    def token_matches(self, given: str) -> bool:
        """Whether ``given`` is the token (compared in constant time)."""
        if self._token is None:
            return True
        return hmac.compare_digest(given.encode(), self._token.encode())

    def log_in(self, request: Request, response: Response) -> None:
        """Set the login cookie on ``response``."""
        assert self._proof is not None
        self._set_cookie(request, response, AUTH_COOKIE, self._proof)

    def log_out(self, request: Request, response: Response) -> None:
        """Clear the login cookie."""
        response.delete_cookie(AUTH_COOKIE, path=_cookie_path(request))

    # -- actions -----------------------------------------------------------------------

    def csrf_token(self, request: Request) -> str:
        """The session's CSRF value: the cookie's, or a new one (then :meth:`remember`
        sets it on the response)."""
        return request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(32)

    def remember(self, request: Request, response: Response, csrf: str) -> None:
        """Set the CSRF cookie on ``response`` if the browser does not have it yet."""
        if request.cookies.get(CSRF_COOKIE) != csrf:
            self._set_cookie(request, response, CSRF_COOKIE, csrf)

    def check_same_origin(self, request: Request, form: dict[str, str]) -> None:
        """Raise :class:`Refusal` unless ``request`` comes from a page of this dashboard:
        its Origin names this host and its ``csrf`` field matches the session cookie."""
        fetch_site = request.headers.get("sec-fetch-site", "")
        if fetch_site in _CROSS_SITE:
            raise Refusal(403, f"refused: a cross-site request (Sec-Fetch-Site: {fetch_site})")
        origin = request.headers.get("origin")
        if origin is not None:
            host = request.headers.get("host", "")
            if origin == "null" or urlsplit(origin).netloc != host:
                raise Refusal(
                    403,
                    f"refused: the request comes from {origin}, not from this dashboard "
                    f"({host}). Behind a reverse proxy, pass the Host header on "
                    "(nginx: proxy_set_header Host $host).",
                )
        cookie = request.cookies.get(CSRF_COOKIE, "")
        field = form.get("csrf", "")
        if not cookie or not field or not hmac.compare_digest(cookie.encode(), field.encode()):
            raise Refusal(
                403,
                "refused: the form's CSRF token is missing or does not match this browser "
                "session. Reload the page and try again.",
            )

    def check_may_act(self) -> None:
        """Raise :class:`Refusal` in read-only mode."""
        if self.read_only:
            raise Refusal(403, "refused: this dashboard is read-only (started with --read-only)")

    # -- cookies -----------------------------------------------------------------------

    @staticmethod
    def _set_cookie(request: Request, response: Response, name: str, value: str) -> None:
        response.set_cookie(
            name,
            value,
            path=_cookie_path(request),
            httponly=True,
            samesite="strict",
            # Behind a TLS proxy the scheme is https only when the server is told so
            # (uvicorn's --proxy-headers, which `qtasks web` turns on for loopback).
            secure=request.url.scheme == "https",
        )


def _cookie_path(request: Request) -> str:
    """The dashboard's own path, so that two dashboards on one host keep apart."""
    return request.scope.get("root_path", "") or "/"
